"""Make the shipped spore model, unet/models/spores/: data, training, scores, model card.

One command (``make model``) runs, with the package's defaults except ``--flatten off``
(the shipped model is meant for anyone's images, exported for bioimage.io, whose
pre-processing cannot divide out a background, and given images as they are; a
background window chosen from this data's spore widths would be wrong for spores
imaged at another scale) and ``--steps 3000`` (the budget the shipped model, and the
notebooks and figures made with it, were trained with; the default budget gives these
crops 4100 steps):

1. ``python -m unet generate-data DATA --seed SEED`` (skipped when DATA/.complete exists
   from the same seed: ``make data`` writes the same files);
2. ``python -m unet train --data DATA --out RUN --flatten off --steps 3000``;
3. writes ``unet/models/spores/``: ``model.keras`` saved *without* its compile config
   and optimizer state (an uncompiled copy of the trained weights: 1.9 MB instead of
   5.8 MB, and plain ``keras.models.load_model`` needs none of this package's losses or
   metrics) and ``config.json``;
4. ``python -m unet evaluate --model unet/models/spores --data DATA/test --json`` and the
   same on DATA/fields (the dish fields, counted): the scores of the file that ships, in
   float32, not of the run's checkpoint (a run trained in mixed precision computes in
   bfloat16 and counts a spore more or less);
5. writes ``MODEL_CARD.md`` with the commands, the data seed and the scores.

Usage: python scripts/make_model.py [--data data/spores] [--run runs/spores] [--seed 0]
       [--out unet/models/spores] [--quick]

``--quick`` trains ``train --quick`` (about a minute): a smoke test of this script, not
a model to ship. ``--package-only`` skips steps 1-2 and packages the run already in
RUN (e.g. one stopped early by hand; the card then says how many epochs it had).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CARD = """# The shipped spore model (`spores`)

**Trained on synthetic spores only.** The images are made by this package's generator
(`unet.spores`, the default `SporeStyle`: brightfield, 8-bit RGB, spores 14–30 px long,
touching and overlapping spores, dark debris). No real microscope image was used. On
your own images it is a starting point: check it with `unet evaluate` on a few annotated
images of yours, and fine-tune it (below) when the scores are not good enough.

Status: {status}

## Use

```bash
python -m unet predict my_images/ --out results/            # --model spores is the default
python -m unet evaluate --data my_annotated/ --report report/
```

```python
from unet.run import load_run
model, config = load_run("spores")    # this folder, inside the installed package
```

Plain Keras loads it without this package (no custom objects, no compile config):
`keras.models.load_model("model.keras")`. What a caller must do itself: give it float32
images `(batch, height, width, 3)` (RGB; gray replicated) normalised per image with the
1st and 99.8th percentiles over all pixels and channels mapped to 0 and 1
(`unet.normalize`); input sides must be {sizes} (valid padding: the output is
{context2} px smaller than the input, {context} px per side); the output is the
sigmoid spore probability (threshold {threshold}). `unet.predict_tiled` does the tiling
for images of any size.

## Fine-tune it on your own images

```bash
python -m unet train --init spores --data my_spores --out runs/mine
python -m unet predict --model runs/mine my_images/ --out results/
```

`--init spores` starts from these weights instead of random ones (the architecture in
`--config` must stay the same: depth {depth}, {filters} filters, {channels} channels).
`benchmarks/finetune.py` measures the benefit on spore images of another style of the
generator, which this model never saw: with 120 training crops, the default config but
without flattening and the same seed, starting from this model reached validation Dice
0.946 after 15 steps and 0.977 after 90; from random weights 0.575 after 15 and 0.828
after 90, never 0.9 (`benchmarks/README.md`). With the default background flattening
(`flatten` auto), the same: 0.938 after 15 steps, 0.973 after 90.

## How it was made

```bash
{commands}
```

`make model` runs exactly these (`scripts/make_model.py`); before the scores it saves the
best checkpoint of `{run}` here without its optimizer state, and scores that file.

- data: `generate-data` with seed **{seed}**: {data}
- training: {trained}
- package versions: TensorFlow {tf}, Keras {keras}, unet-spores {version}
- config: see `config.json` beside this file (schema version {schema})
- weights: {params:,} parameters, `model.keras` {size_mb:.2f} MB

## Scores

Measured by `python -m unet evaluate` at each image's own size (Dice pooled over all
pixels; count error: mean over images of |counted − true| / true), threshold {threshold}:

| data (seed {seed}, not trained on) | images | Dice | IoU | precision | recall | spores counted / true | count error |
|---|---|---|---|---|---|---|---|
{rows}
"""


def run(cmd, capture=False):
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode:
        sys.exit(f"make_model: {cmd[3] if len(cmd) > 3 else cmd} failed ({done.returncode})")
    return done.stdout


def score_row(name, r):
    counted = (f"{r['count_pred']} / {r['count_true']} | {100 * r['count_error']:.1f} %"
               if "count_true" in r else "– | –")
    return (f"| {name} | {r['images']} | {r['dice']:.4f} | {r['iou']:.4f} | "
            f"{r['precision']:.4f} | {r['recall']:.4f} | {counted} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/spores", help="data folder (data/spores)")
    p.add_argument("--run", default="runs/spores", help="training run folder (runs/spores)")
    p.add_argument("--seed", type=int, default=0, help="data seed (0)")
    p.add_argument("--out", default="unet/models/spores", help="where the model goes")
    p.add_argument("--quick", action="store_true", help="a one-minute smoke test")
    p.add_argument("--package-only", action="store_true",
                   help="do not generate or train: evaluate and package the run in --run")
    args = p.parse_args(argv)
    py = [sys.executable, "-m", "unet"]
    data, run_dir, out = Path(args.data), Path(args.run), ROOT / args.out
    commands = []
    stamp = data / ".complete"
    gen = [*py, "generate-data", data, "--seed", args.seed, "--overwrite"]
    commands.append(gen)
    if args.package_only:
        pass
    elif stamp.exists() and stamp.read_text().strip() in ({"", "0"} if args.seed == 0
                                                          else {str(args.seed)}):
        print(f"make_model: {data} already generated (seed {args.seed}); not regenerated")
    else:
        run(gen)
        stamp.write_text(f"{args.seed}\n")
    # 3000 steps: the shipped model's budget, which the notebooks, figures and tests were
    # made with; the default ("auto") would give these 100 px crops 4100
    train = [*py, "train", "--data", data, "--out", run_dir, "--flatten", "off", "--steps",
             "3000", "--overwrite"]
    if args.quick:
        train.append("--quick")
    commands.append(train)
    if not args.package_only:
        run(train)
    import keras

    import unet
    from unet.io import atomic_path, write_text
    from unet.run import SCHEMA_VERSION, load_run, read_history
    from unet.sizes import input_size_for_output, output_size

    trained, config = load_run(run_dir)
    fresh = config.build_model()  # uncompiled: no optimizer, no compile config
    fresh.set_weights(trained.get_weights())
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.keras") as tmp:
        fresh.save(tmp)
    config.save(out / "config.json")
    scores = {}
    for split in ("test", "fields"):  # the file that ships, as users load it
        cmd = [*py, "evaluate", "--model", Path(args.out), "--data", data / split, "--json"]
        commands.append(cmd)
        scores[split] = json.loads(run(cmd, capture=True))
    smallest = input_size_for_output(1, config.depth, config.padding)
    step = 2**config.depth
    context2 = smallest - output_size(smallest, config.depth, config.padding)
    history = read_history(run_dir / "history.csv")
    epochs = len(history.get("epoch", []))
    best = history.get("val_dice")
    minutes = float(history["seconds"].sum()) / 60 if "seconds" in history else float("nan")
    unfinished = (run_dir / "backup").exists()  # a run stopped before its end keeps it
    planned = (f"{config.epochs} epochs" if hasattr(config, "epochs")  # schema 1
               else f"{getattr(config, 'steps', '?')} steps")  # schema 2
    stopped = (f" (stopped by hand after {epochs} epochs of the config's {planned}, "
               "on a machine shared with other jobs, so the time is no speed measurement: "
               "the best checkpoint so far)" if unfinished else "")
    steps = int(history["step"][-1]) if "step" in history else None
    done = f"{steps} steps ({epochs} epochs)" if steps else f"{epochs} epochs"
    trained_text = (f"{done}{stopped}, {minutes:.1f} min on {_machine()}"
                    + (f", best validation Dice {best.max():.4f}" if best is not None else ""))
    splits = {}
    for split in ("train", "val", "test", "fields"):
        folder = data / split / "images"
        if folder.is_dir():
            splits[split] = sum(1 for _ in folder.iterdir())
    card = CARD.format(
        status=("**quick smoke-test model, not for use**" if args.quick else
                "**provisional**: trained with the defaults of this version but stopped "
                "early; to be retrained with `make model`." if unfinished else
                "trained to the end with the defaults of this version but `flatten` (off: "
                "images are given as they are, and the model exports for bioimage.io) and "
                "`steps` (3000; the default budget gives these crops 4100); `make model` "
                "makes it again when the training defaults change."),
        sizes=f"{smallest} + {step}·n (n = 0, 1, 2, …)", context2=context2,
        context=context2 // 2, threshold=config.threshold, depth=config.depth,
        filters=config.filters, channels=config.channels,
        commands="\n".join(" ".join(shlex.quote(str(c)) for c in ["python", *cmd[1:]])
                           for cmd in commands),
        run=run_dir, seed=args.seed,
        data=", ".join(f"{n} {s}" for s, n in splits.items()) + " images (crops of at most "
        "100×100 px; fields of 1024×1024)",
        trained=trained_text, tf=_version("tensorflow"), keras=keras.__version__,
        version=unet.__version__, schema=SCHEMA_VERSION, params=fresh.count_params(),
        size_mb=(out / "model.keras").stat().st_size / 1e6,
        rows="\n".join(score_row(f"{s} ({'crops' if s == 'test' else 'dish fields'})", r)
                       for s, r in scores.items()),
    )
    write_text(out / "MODEL_CARD.md", card)
    print(f"make_model: wrote {out}/model.keras ({(out / 'model.keras').stat().st_size / 1e6:.2f}"
          f" MB), config.json, MODEL_CARD.md")


def _version(name):
    from importlib.metadata import version

    return version(name)


def _machine():
    import os
    import platform

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (f"{os.cpu_count()} CPU cores ({platform.machine()}), "
            + (f"{len(gpus)} GPU(s)" if gpus else "no GPU"))


if __name__ == "__main__":
    main()
