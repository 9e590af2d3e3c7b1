"""The command line: ``python -m unet <command> ...`` (or the ``unet`` script).

Exit codes: 0 on success, 2 with one line on stderr for a user mistake (bad
argument, missing or unreadable input, an output that already exists), 1 for
anything unexpected (with its traceback, since that is a bug worth reporting).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m unet",
        description="U-Net segmentation of microscope images: data, training, prediction, counting.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"unet {__version__}")
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
    from .train import PRECISIONS, STRATEGIES

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
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON file of settings (see unet.train.Config); missing keys keep defaults")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="mixed precision policy (default: auto, the fastest safe one here)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="tf.distribute strategy (default: auto)")
    p.add_argument("--quick", action="store_true", help="train for about a minute (a smoke test)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in RUN")
    p.set_defaults(func=_train)


def _train(args):
    import dataclasses

    from .train import Config, train

    config = Config.load(args.config) if args.config else Config()
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
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
        f"{'resumed and ' if result['resumed'] else ''}trained {result['epochs']} epochs "
        f"({best}{result['seconds']:.0f} s, {result['precision']}): {result['model']}"
    )


# ---------------------------------------------------------------------------- evaluate
def _add_model_options(p):
    """--model, --threshold and --tta: what evaluate and predict share."""
    p.add_argument("--model", required=True, type=Path, metavar="RUN_OR_FILE",
                   help="run directory or .keras file")
    p.add_argument("--threshold", type=float, help="foreground threshold (default: the run's)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation")


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
    from .train import load_run

    model, config = load_run(args.model)
    threshold = _threshold(args.threshold, config)
    result = evaluate(model, args.data, threshold=threshold, tta=args.tta,
                      progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['images']} images, {result['pixels']:,} pixels, threshold {threshold}")
    for key in ("dice", "iou", "precision", "recall"):
        print(f"  {key:<10}{result[key]:.4f}")
    if "count_true" in result:
        print(f"  spores    {result['count_pred']} predicted / {result['count_true']} true "
              f"(mean error {100 * result['count_error']:.1f} % per image)")


def _threshold(value, config):
    if value is None:
        return config.threshold if config else 0.5
    if not 0 < value < 1:
        raise ValueError(f"--threshold must be between 0 and 1, got {value}.")
    return value


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
    p.add_argument("--min-area", type=int, help="smallest spore area in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace files already in OUT")
    p.set_defaults(func=_predict)


def _predict(args):
    from .predict import predict_images
    from .train import load_run

    model, config = load_run(args.model)
    summary = predict_images(
        model,
        args.inputs,
        args.out,
        threshold=_threshold(args.threshold, config),
        tta=args.tta,
        min_area=args.min_area,
        overwrite=args.overwrite,
        progress=True,
    )
    total = sum(count for _, count in summary)
    print(f"{len(summary)} images, {total} spores: {args.out}/summary.csv, {args.out}/spores.csv")


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad arguments
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except (ValueError, OSError) as error:
        message = str(error) or error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
