"""Run every benchmark and print the summary table (what ``make bench`` runs).

    python benchmarks/run_all.py [--only a,b] [--budget 240] [--data data/spores] [--quick]

Runs, each in its own process, with modest defaults (about 30 minutes in all on
2 CPU cores): model_speed, data_pipeline, precision, tiling, memory, quality, then
reads their JSON files from benchmarks/results/ and prints one table of the figures
that matter, each with its target. ``--quick`` shortens everything (a smoke test,
a few minutes; the figures are then rough). Run a script alone for its own flags
(``python benchmarks/NAME.py --help``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ORDER = ("model_speed", "data_pipeline", "precision", "tiling", "memory", "quality")


def arguments(name, args):
    data = ["--data", args.data] if name not in ("model_speed", "tiling") else []
    quick = {
        "model_speed": ["--repeats", "2", "--matmul", "1024"],
        "data_pipeline": ["--rounds", "2", "--steps", "3", "--limit", "100"],
        "precision": ["--steps", "100", "--train-limit", "64"],
        "tiling": ["--size", "1024", "--max-tiles", "320,800", "--batches", "1", "--repeats", "1"],
        "memory": ["--train-limit", "64", "--size", "2048"],
        "quality": ["--budget", "20"],
    }
    extra = quick[name] if args.quick else []
    if name == "quality" and args.budget and not args.quick:
        extra = ["--budget", str(args.budget)]
    return data + extra


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows():
    """(figure, value, target) rows from the results on disk."""
    rows = []
    speed = load("model_speed")
    if speed:
        for r in speed["rows"]:
            rows.append((f"{r['model']} model {r['tile']}px, {r['precision']}: train step",
                         f"{r['train_images_per_s']['median']:.2f} img/s, "
                         f"{r['train_gflops']['median']:.0f} GFLOP/s = "
                         f"{r['train_of_matmul']:.2f} x matmul", ""))
        for key in [k for k in speed if k.endswith("speed-up bf16/fp32")]:
            rows.append((key.replace("train speed-up", "train step speed-up"),
                         f"{speed[key]:.2f}x", ">= 1.8x"))
    pipe = load("data_pipeline")
    if pipe:
        aug = pipe["pipeline alone, default augmentation"]
        rows.append(("augmentation cost", f"{aug['cpu_ms_per_tile']['median']:.2f} CPU ms/tile",
                     ""))
        ratio = pipe["ratio pipeline/memory"]
        rows.append((f"train step fed by the pipeline / from memory ({pipe['precision']})",
                     f"{ratio['median']:.3f} ({ratio['min']:.2f}-{ratio['max']:.2f})", ">= 0.9"))
    prec = load("precision")
    if prec and "bf16" in prec:
        crops = prec["train_limit"] or "all"
        rows.append((f"bf16 vs fp32 training ({prec['steps']} steps, {crops} crops): "
                     "epoch speed", f"{prec['bf16']['speedup']:.2f}x", ">= 1.8x"))
        rows.append(("bf16 - fp32 test Dice", f"{prec['bf16']['dice_difference']:+.4f}",
                     "within 0.01"))
        rows.append(("resolve_precision('auto')", prec["auto"], "fastest safe"))
    tiling = load("tiling")
    if tiling:
        d = next(r for r in tiling["rows"] if r.get("default"))
        rows.append((f"predict {tiling['size']}^2, default tiles ({d['tile']}px, batch "
                     f"{d['batch']})", f"{d['seconds']['median']:.1f} s, "
                     f"{d['output_mp_per_s']['median']:.2f} MP/s", ""))
        rows.append(("work ratio, default tiles", f"{d['work_ratio']:.2f}", "<= 1.6"))
    memory = load("memory")
    if memory:
        runs = memory["runs"]
        rows.append(("peak RSS: training (1 epoch)", f"{runs['train']['peak_rss_mb']:.0f} MB", ""))
        rows.append((f"peak RSS: predict {runs['predict']['size']}^2",
                     f"{runs['predict']['peak_rss_mb']:.0f} MB (whole-image activations "
                     f"{memory['whole_image_all_layers_mb']:.0f} MB)", "no whole-image activations"))
    quality = load("quality")
    if quality:
        for name, e in quality["methods"].items():
            trained = f", {e['epochs']:.1f} epochs" if "epochs" in e else ""
            rows.append((f"quality, {name} ({quality['budget_s']:.0f} s budget{trained})",
                         f"test Dice {e['test']['dice']:.3f}, field count error "
                         f"{e['fields']['count_error']:.1%}", ""))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma list of {', '.join(ORDER)}")
    parser.add_argument("--data", default=str(HERE.parent / "data" / "spores"))
    parser.add_argument("--budget", type=float, help="quality: training seconds per model")
    parser.add_argument("--quick", action="store_true", help="short smoke-test settings")
    parser.add_argument("--summary", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else ORDER
    unknown = set(names) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(ORDER)}")
    if not args.summary:
        for name in names:
            command = [sys.executable, str(HERE / f"{name}.py"), *arguments(name, args)]
            print(f"== {name}: {' '.join(command[1:])}", flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    from common import machine, table

    info = machine()
    print(f"\nSummary ({info['cpu']}, {info['cores']} cores, {', '.join(info['flags'])}; "
          f"GPU: {info['gpu']})")
    print(table(summary_rows(), ("figure", "measured", "target")))


if __name__ == "__main__":
    main()
