"""The package's shape: layered imports, a cheap `import unet`, clear start-up errors.

Layers: every import, function-level ones included, points downwards.

A module may import the modules of the layers below its own and, within its layer,
those listed before it; so the import graph has no cycle. A new module must be
placed in a layer here.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "unet"

LAYERS = [
    ("foundations", ["errors", "_tf"]),
    ("building blocks", ["sizes", "model", "losses", "metrics", "count", "io", "image",
                         "imagefile", "render", "outputs", "augment", "devices"]),
    ("arrays", ["predict", "calibrate", "data", "baseline", "spores"]),
    ("applications", ["run", "plot.concepts", "plot.results", "plot", "evaluate", "report",
                      "batch", "export", "train"]),
    ("interface", ["", "cli", "__main__"]),  # "" is the package face, unet/__init__.py
]
ORDER = [m for _, modules in LAYERS for m in modules]
LAYER_OF = {m: i for i, (_, modules) in enumerate(LAYERS) for m in modules}


def module_files():
    """Module name (relative to the package, '' for __init__) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name, path, modules):
    """The package modules that ``name`` imports anywhere in its file (any depth)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name.split(".", 1)[1] for a in node.names
                       if a.name.split(".")[0] == "unet" and "." in a.name]
            targets += ["" for a in node.names if a.name == "unet"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                where = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "unet":
                where = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                full = f"{where}.{alias.name}" if where else alias.name
                targets.append(full if full in modules else where)
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_every_module_has_a_layer():
    missing = sorted(set(module_files()) - set(ORDER))
    assert not missing, f"place these modules in LAYERS: {missing}"


def test_imports_point_down_the_layers():
    modules = module_files()
    problems = []
    for name, path in modules.items():
        for target in sorted(imports_of(name, path, modules)):
            if ORDER.index(target) >= ORDER.index(name):
                where = "a higher layer" if LAYER_OF[target] > LAYER_OF[name] else "later in its layer"
                problems.append(f"{name or 'unet'} imports {target or 'unet'} ({where})")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The walker must find an import hidden in a function (the kind that hid a cycle)."""
    source = "def f():\n    from .predict import plan_tiles\n    from . import io\n"
    path = tmp_path / "model.py"
    path.write_text(source)
    assert imports_of("model", path, {"predict": None, "io": None, "model": None}) == {
        "predict", "io"}


def test_import_unet_starts_no_tensorflow():
    code = ("import sys, unet; assert 'tensorflow' not in sys.modules and 'keras' not in "
            "sys.modules, sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"],
                                  ["predict", "--help"], ["generate-data", "--help"],
                                  ["evaluate", "--help"], ["export", "--help"]])
def test_help_and_version_start_no_tensorflow(args):
    code = ("import sys\nfrom unet.cli import main\ntry:\n    main(%r)\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nheavy = sorted(m for m in sys.modules if m.split('.')[0]"
            " in ('tensorflow', 'keras', 'skimage', 'matplotlib', 'scipy'))\n"
            "assert not heavy, heavy\n" % (args,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_missing_tensorflow_is_one_clear_line():
    code = (
        "import importlib.util, unet\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'tensorflow' else real(name, *a)\n"
        "try:\n    unet.unet_model\nexcept ModuleNotFoundError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "unet-spores[tensorflow]" in done.stdout and "tensorflow-cpu" in done.stdout


def test_tensorflow_starts_quietly_and_registers_the_saved_model_classes():
    code = ("import unet, keras\n"
            "assert keras.saving.get_registered_object('unet>ResizeToMatch') is not None\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "absl::InitializeLog" not in done.stderr and "cuda drivers" not in done.stderr
