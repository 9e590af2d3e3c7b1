"""The command line: ``unet <command> ...`` or ``python -m unet <command> ...``.

Exit codes: 0 on success; 2 with one line on stderr for a mistake the user can
fix (a :class:`unet.errors.UsageError` or an ``OSError``: a bad argument, missing or
unreadable input, an output that already exists); 1 with one line for anything
unexpected (a bug: ``--debug`` or ``UNET_DEBUG=1`` shows its traceback); 130 on
Ctrl-C. Library messages name the library's parameters; they are translated into
this command line's flags here.

Building the parser imports no TensorFlow, so ``--help`` and ``--version`` answer
at once; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import UsageError, translate

#: Library parameter -> command-line flag, for the messages of every command.
FLAGS = {
    "out_dir": "--out",
    "data_dir": "--data",
    "overwrite": "--overwrite",
    "steps": "--steps",
    "crop_size": "--crop-size",
    "precision": "--precision",
    "strategy": "--strategy",
    "threshold": "--threshold",
    "min_area": "--min-area",
    "split_h": "--split-h",
    "tta": "--tta",
    "seed": "--seed",
    "field_size": "--field-size",
    "train": "--train",
    "val": "--val",
    "test": "--test",
    "fields": "--fields",
    "config": "--config",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="unet",
        description="U-Net segmentation of microscope images: data, training, prediction, counting.",
    )
    from . import DISTRIBUTION, __version__

    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (or UNET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each command adds its sub-parser here and sets `func`; command bodies import
    # the modules they need themselves.
    _add_generate_data(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    return parser


# ----------------------------------------------------------------------- generate-data
def _add_generate_data(sub):
    from .spores import DEFAULT_COUNTS, FIELD_SIZE

    gen = sub.add_parser(
        "generate-data",
        help="write the synthetic spore data set (crops, dish fields, masks, labels, counts)",
        description="Write synthetic brightfield spore images with exact truth: "
        "OUT/{train,val,test}/ crops (<=100x100 px) and OUT/fields/ whole dish images, each "
        "with images/, masks/ (0/255), labels/ (16-bit instances) and counts.csv.",
    )
    gen.add_argument("out", metavar="OUT", help="data set root, e.g. data/spores")
    splits = {
        "train": "training crops",
        "val": "validation crops",
        "test": "test crops",
        "fields": "whole dish fields",
    }
    for split, what in splits.items():
        n = DEFAULT_COUNTS[split]
        gen.add_argument(f"--{split}", type=int, default=n, metavar="N", help=f"{what} ({n})")
    gen.add_argument(
        "--field-size",
        type=int,
        default=FIELD_SIZE,
        metavar="PX",
        help=f"side of the square fields, at least {FIELD_SIZE} ({FIELD_SIZE})",
    )
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    gen.add_argument(
        "--overwrite", action="store_true", help="replace existing train/val/test/fields in OUT"
    )
    gen.set_defaults(func=_generate_data)


def _generate_data(args):
    from .spores import generate_dataset

    summary = generate_dataset(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        fields=args.fields,
        seed=args.seed,
        field_size=args.field_size,
        overwrite=args.overwrite,
        progress=True,
    )
    parts = ", ".join(
        f"{split} {s['images']} ({s['spores']} spores)" for split, s in summary["splits"].items()
    )
    print(
        f"wrote {summary['files']} files to {summary['out']}: {parts or 'nothing'}; "
        f"{summary['spores']} spores in {summary['seconds']:.1f} s"
    )


# ------------------------------------------------------------------------------- train
def _add_train(sub):
    from .devices import PRECISIONS, STRATEGIES

    p = sub.add_parser(
        "train",
        help="train a U-Net on a data folder",
        description="Train a U-Net. DIR holds train/ and val/, each with images/ and masks/ "
        "(matching file stems). Running the same command again after an interruption "
        "resumes from the last finished epoch.",
    )
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="data folder")
    p.add_argument("--out", required=True, type=Path, metavar="RUN",
                   help="run directory: model.keras, config.json, history.csv, curves.png, logs/")
    p.add_argument("--steps", type=int, metavar="N",
                   help="optimiser steps (overrides the config; default 3000)")
    p.add_argument("--crop-size", type=int, metavar="PX",
                   help="side of the training window in output pixels (default: chosen from "
                        "the data: the largest crop, or room for the context and 3 objects)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON file of settings (see unet.run.Config); missing keys keep defaults")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="mixed precision policy (default: auto, the fastest safe one here)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="tf.distribute strategy (default: auto)")
    p.add_argument("--quick", action="store_true", help="train for about a minute (a smoke test)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in RUN")
    p.set_defaults(func=_train)


def _train(args):
    import dataclasses

    from .run import Config
    from .train import train

    config = Config.load(args.config) if args.config else Config()
    overrides = {k: v for k, v in (("steps", args.steps), ("crop_size", args.crop_size))
                 if v is not None}
    if overrides:
        config = Config.from_dict({**config.to_dict(), **overrides})
    result = train(
        config,
        args.data,
        args.out,
        precision=args.precision,
        strategy=args.strategy,
        quick=args.quick,
        overwrite=args.overwrite,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    best = result["history"].get("val_dice")
    best = f"best validation Dice {best.max():.4f}, " if best is not None and best.size else ""
    print(
        f"{'resumed and ' if result['resumed'] else ''}trained {result['steps']} steps "
        f"({best}{result['seconds']:.0f} s, {result['precision']}): {result['model']}"
    )
    print(result["calibration_note"])


# ---------------------------------------------------------------------------- evaluate
def _add_model_options(p):
    """--model and the post-processing options: what evaluate and predict share."""
    p.add_argument("--model", required=True, type=Path, metavar="RUN_OR_FILE",
                   help="run directory or .keras file")
    p.add_argument("--threshold", type=float,
                   help="foreground threshold (default: the run's, calibrated in training)")
    p.add_argument("--split-h", type=float, metavar="H",
                   help="split height of touching spores (default: the run's)")
    p.add_argument("--min-area", type=int, metavar="PX",
                   help="smallest spore area in pixels (default: the run's)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation")


def _postprocessing(args, config):
    """threshold, split_h and min_area: the flags, else the run's config, else the defaults."""
    from .count import MIN_AREA, SPLIT_H

    chosen = {
        "threshold": config.threshold if config else 0.5,
        "split_h": config.split_h if config else SPLIT_H,
        "min_area": config.min_area if config else MIN_AREA,
    }
    if args.threshold is not None:
        if not 0 < args.threshold < 1:
            raise UsageError(f"`threshold` must be between 0 and 1, got {args.threshold}.")
        chosen["threshold"] = args.threshold
    if args.split_h is not None:
        if not args.split_h > 0:
            raise UsageError(f"`split_h` must be positive, got {args.split_h}.")
        chosen["split_h"] = args.split_h
    if args.min_area is not None:
        if args.min_area < 1:
            raise UsageError(f"`min_area` must be at least 1 pixel, got {args.min_area}.")
        chosen["min_area"] = args.min_area
    return chosen


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="score a model on a data folder at full image size",
        description="Dice, IoU, precision and recall pooled over all pixels of all images "
        "(each predicted at its original size), and spore counts where the folder has "
        "labels/ or counts.csv.",
    )
    _add_model_options(p)
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="data folder with images/ and masks/")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)


def _evaluate(args):
    import json

    from .evaluate import evaluate
    from .run import load_run

    model, config = load_run(args.model)
    post = _postprocessing(args, config)
    threshold = post["threshold"]
    result = evaluate(model, args.data, tta=args.tta, progress=not args.json, **post)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['images']} images, {result['pixels']:,} pixels, threshold {threshold}, "
          f"split_h {post['split_h']}, min_area {post['min_area']}")
    for key in ("dice", "iou", "precision", "recall"):
        print(f"  {key:<10}{result[key]:.4f}")
    if "object_f1" in result:
        print(f"  objects   F1 {result['object_f1']:.4f} at IoU 0.5 (precision "
              f"{result['object_precision']:.4f}, recall {result['object_recall']:.4f}), "
              f"AP 0.5:0.95 {result['ap_50_95']:.4f}; truth: {result['object_truth']}")
    if "count_true" in result:
        print(f"  spores    {result['count_pred']} predicted / {result['count_true']} true "
              f"(mean error {100 * result['count_error']:.1f} % per image)")


# ----------------------------------------------------------------------------- predict
def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="segment and count spores in images of any size",
        description="Predict masks for image files or folders of any size (no resizing), "
        "split touching spores and measure each one. Writes OUT/NAME_mask.png, "
        "OUT/NAME_overlay.png, OUT/spores.csv and OUT/summary.csv.",
    )
    _add_model_options(p)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace files already in OUT")
    p.set_defaults(func=_predict)


def _predict(args):
    from .batch import predict_images
    from .run import load_run

    model, config = load_run(args.model)
    summary = predict_images(
        model,
        args.inputs,
        args.out,
        tta=args.tta,
        **_postprocessing(args, config),
        overwrite=args.overwrite,
        progress=True,
    )
    total = sum(count for _, count in summary)
    print(f"{len(summary)} images, {total} spores: {args.out}/summary.csv, {args.out}/spores.csv")


def _one_line(error):
    return " ".join(str(error).split()) or error.__class__.__name__


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad arguments
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("UNET_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, OSError) as error:
        if debug:
            raise
        print(f"error: {translate(_one_line(error), FLAGS)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: say so in one line, traceback on request
        if debug:
            raise
        print(
            f"error: unexpected {error.__class__.__name__}: {_one_line(error)} (this is a bug; "
            "run again with --debug or UNET_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
