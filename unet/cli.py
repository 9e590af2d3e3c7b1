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
import math
import os
import sys
from pathlib import Path

from .errors import UsageError, translate

#: ``--split-h relative``: the split height relative to each image's objects.
RELATIVE = "relative"

#: Library parameter -> command-line flag, for the messages of every command.
FLAGS = {
    "out_dir": "--out",
    "data_dir": "--data",
    "overwrite": "--overwrite",
    "steps": "--steps",
    "max_minutes": "--max-minutes",
    "crop_size": "--crop-size",
    "foreground_fraction": "--foreground-fraction",
    "flatten": "--flatten",
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
    "max_area": "--max-area",
    "exclude_border": "--exclude-border",
    "pixel_size": "--pixel-size",
    "channel": "--channel",
    "recursive": "--recursive",
    "tile": "--tile",
    "batch_size": "--batch-size",
    "probability": "--prob",
    "workers": "--workers",
    "init": "--init",
    "report_dir": "--report",
    "formats": "--formats",
    "opset": "--opset",
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
    _add_calibrate(sub)
    _add_predict(sub)
    _add_export(sub)
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
    p.add_argument("--steps", type=_steps, metavar="N|auto",
                   help="optimiser steps (overrides the config). auto (default): about the "
                        "time of 3000 steps of the largest training window, so more steps "
                        "for smaller windows (4100 for 100 px crops, 3000 for 132 px)")
    p.add_argument("--max-minutes", type=_minutes, metavar="M|off",
                   help="stop training (keeping the best validation network) before M minutes "
                        "of training and validation have passed (default: off, every step; a "
                        "default run takes 10-11 min on 2 CPU cores with bf16 units, about an "
                        "hour on 2 without them)")
    p.add_argument("--crop-size", type=int, metavar="PX",
                   help="side of the training window in output pixels (default: chosen from "
                        "the data: the largest crop, or room for the context and 3 objects)")
    p.add_argument("--foreground-fraction", type=float, metavar="F",
                   help="share of the training windows of large images placed over an object "
                        "(default 0.66; 0 = anywhere)")
    p.add_argument("--flatten", type=_window, metavar="PX|auto|off",
                   help="divide every image by its brightfield background, a grey closing "
                        "of PX pixels (more than the largest object), before normalising; "
                        "predict and evaluate do the same. auto (default): 3x the 95th "
                        "percentile of the training objects' widths, off where they are not "
                        "darker than their background (fluorescence). off: never (what a run "
                        "needs to be exported for bioimage.io)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="the run predicts with test-time augmentation: its post-processing is "
                   "calibrated on augmented maps, and predict and evaluate augment by default "
                   "(3-6x the prediction time; measured: object F1 +0.016-0.018 and count "
                   "error lower on another renderer's spores, a little worse on real cells, "
                   "mixed on nuclei; default: off)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON file of settings (see unet.run.Config); missing keys keep defaults")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="mixed precision policy (default: auto, the fastest safe one here)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="tf.distribute strategy (default: auto)")
    p.add_argument("--init", metavar="RUN_OR_NAME",
                   help="start from the weights of a trained model (a run directory, a "
                   ".keras file or a shipped model: `--init spores` fine-tunes the shipped "
                   "spore model on DIR); the architecture must match (default: random "
                   "weights)")
    p.add_argument("--quick", action="store_true", help="train for about a minute (a smoke test)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in RUN")
    p.set_defaults(func=_train)


def _train(args):

    from .run import Config
    from .train import train

    config = Config.load(args.config) if args.config else Config()
    overrides = {k: v for k, v in (("steps", args.steps), ("max_minutes", args.max_minutes),
                                   ("crop_size", args.crop_size),
                                   ("foreground_fraction", args.foreground_fraction),
                                   ("flatten", args.flatten), ("tta", args.tta))
                 if v is not None}
    for key in ("flatten", "max_minutes"):
        if overrides.get(key) == "off":
            overrides[key] = None
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
        init=args.init,
    )
    best = result["history"].get("val_dice")
    best = f"best validation Dice {best.max():.4f}, " if best is not None and best.size else ""
    print(
        f"{'resumed and ' if result['resumed'] else ''}trained {result['steps']} steps "
        f"({best}{result['seconds']:.0f} s, {result['precision']}): {result['model']}"
    )
    if result["time_limited"]:
        print(f"max_minutes: stopped at {result['config'].max_minutes:g} min after "
              f"{result['steps']} of {result['config'].steps} steps; more steps may score "
              "higher: --max-minutes off trains them all")
    if config.steps == "auto" and not args.quick:
        print(f"steps auto: {result['config'].steps} steps of {result['config'].tile_size} px "
              "tiles")
    if config.flatten == "auto":
        chosen = result["config"].flatten
        print(f"flatten auto: a background window of {chosen} px" if chosen else
              "flatten auto: off (the training objects are not darker than their background)")
    print(result["calibration_note"])


# ---------------------------------------------------------------------------- evaluate
def _add_model_options(p):
    """--model and the post-processing options: what evaluate and predict share."""
    from .run import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, metavar="RUN_OR_NAME",
                   help="run directory, .keras file or the name of a shipped model (default: "
                   f"{DEFAULT_MODEL}, the pretrained spore model; see its MODEL_CARD.md)")
    p.add_argument("--threshold", type=float,
                   help="foreground threshold (default: the run's, calibrated in training)")
    p.add_argument("--split-h", type=_split_height, metavar="H",
                   help="split height of touching spores in pixels, or 'relative': 0.05 x "
                   "the median spore radius of each image (default: the run's, relative "
                   "where it chose none)")
    p.add_argument("--min-area", type=int, metavar="PX",
                   help=f"smallest spore area in pixels (default: the run's, else {_MIN_AREA})")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation: average the maps of the flipped and turned "
                   "tiles (4 or 8 passes, 3-6x the prediction time; see benchmarks/README.md) "
                   "(default: the run's, off unless it was trained with --tta, whose "
                   "post-processing is calibrated for it)")


def _split_height(text):
    """``--split-h``: a number of pixels, or ``relative`` (None, the labelling's default)."""
    if text.strip().lower() == "relative":
        return RELATIVE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of pixels or 'relative', got {text!r}") from None


def _postprocessing(args, model):
    """threshold, split_h, min_area and tta: the flags, else what the model's run chose
    (:func:`unet.model.prediction_settings`)."""
    from .count import resolve_min_area
    from .model import FROM_MODEL, prediction_settings

    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"`threshold` must be between 0 and 1, got {args.threshold}.")
    if args.split_h not in (None, RELATIVE) and not args.split_h > 0:
        raise UsageError(f"`split_h` must be positive, got {args.split_h}.")
    if args.min_area is not None and args.min_area < 1:
        raise UsageError(f"`min_area` must be at least 1 pixel, got {args.min_area}.")
    given = {"threshold": args.threshold, "split_h": args.split_h,
             "min_area": args.min_area, "tta": args.tta}
    chosen = {name: FROM_MODEL if value is None else value for name, value in given.items()}
    if args.split_h == RELATIVE:
        chosen["split_h"] = None  # the labelling's relative split height
    chosen = prediction_settings(model, **chosen)
    chosen["min_area"] = resolve_min_area(chosen["min_area"])  # older runs carry None
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
    p.add_argument("--report", type=Path, metavar="DIR", dest="report_dir",
                   help="also write figures to DIR: the worst and typical images (image, "
                   "truth, prediction, errors), Dice and count error against the threshold, "
                   "true vs predicted spore sizes, and report.md (predicts the images a second "
                   "time; default: no report)")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in DIR")
    p.set_defaults(func=_evaluate)


def _evaluate(args):
    import json

    from .evaluate import evaluate
    from .run import load_run

    model, _ = load_run(args.model)
    post = _postprocessing(args, model)
    threshold = post["threshold"]
    if args.report_dir is not None:
        from .report import check_report_dir

        check_report_dir(args.report_dir, args.overwrite)
    # the model carries its run's background window (load_run): evaluate divides it out
    result = evaluate(model, args.data, progress=not args.json, **post)
    if args.report_dir is not None:
        from .report import write_report

        written = write_report(model, args.data, args.report_dir, overwrite=args.overwrite,
                               scores=result, progress=not args.json, **post)
        if not args.json:
            print(f"report: {written}")
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['images']} images, {result['pixels']:,} pixels, threshold {threshold}, "
          f"split_h {RELATIVE if post['split_h'] is None else post['split_h']}, "
          f"min_area {post['min_area']}"
          f"{', tta' if post['tta'] else ''}")
    for key in ("dice", "iou", "precision", "recall"):
        print(f"  {key:<10}{result[key]:.4f}")
    if "object_f1" in result:
        print(f"  objects   F1 {result['object_f1']:.4f} at IoU 0.5 (precision "
              f"{result['object_precision']:.4f}, recall {result['object_recall']:.4f}), "
              f"AP 0.5:0.95 {result['ap_50_95']:.4f}; truth: {result['object_truth']}")
        e = result["object_errors"]
        print(f"  unmatched {e['true'] - e['matched']} of {e['true']} true objects: "
              f"{e['missed']} missed, {e['merged']} merged, {e['split']} split, "
              f"{e['outline']} outlined too differently; {e['spurious']} of {e['pred']} "
              f"found lie mostly on background")
    if "count_true" in result:
        print(f"  spores    {result['count_pred']} predicted / {result['count_true']} true "
              f"(mean error {100 * result['count_error']:.1f} % per image)")


# --------------------------------------------------------------------------- calibrate
def _add_calibrate(sub):
    from .run import DEFAULT_MODEL

    p = sub.add_parser(
        "calibrate",
        help="choose a trained model's threshold, split height and smallest spore on your "
        "annotated images",
        description="Predict the images of DIR with a trained model and choose its "
        "post-processing (threshold, split height of touching spores, smallest spore) on "
        "their truth, as train does on its validation split: object F1 against labels/ (or "
        "masks holding instance ids), else the count error against counts.csv. Writes a new "
        "run folder OUT (the model copied, config.json with the chosen values) for predict "
        "and evaluate; the model itself is left as it is. Calibrate on images like those "
        "you will count: a few annotated whole fields, not small crops, for whole fields.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="RUN_OR_NAME",
                   help="run directory or the name of a shipped model (default: "
                   f"{DEFAULT_MODEL})")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="data folder with images/, masks/ and labels/ (or instance-id masks; "
                   "or counts.csv, which counts closer but cuts more spores apart than labels: "
                   "see benchmarks/README.md)")
    p.add_argument("--out", required=True, type=Path, metavar="OUT",
                   help="the calibrated run: a new or empty folder")
    p.set_defaults(func=_calibrate)


def _calibrate(args):
    from .train import calibrate_run

    result = calibrate_run(args.model, args.data, args.out)
    print(result["note"])
    print(f"calibrated run: {result['out_dir']} (use it with predict/evaluate --model "
          f"{result['out_dir']})")


# ----------------------------------------------------------------------------- predict
def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="segment and count spores in images of any size",
        description="Predict masks for image files or folders of any size (no resizing), "
        "split touching spores and measure each one. Writes, per image, OUT/NAME_mask.png, "
        "OUT/NAME_overlay.png (spores outlined and numbered by id), OUT/NAME_labels.tif "
        "(16-bit instance labels, ids as in spores.csv; 32-bit beyond 65535 spores), "
        "OUT/NAME_rois.zip (ImageJ ROIs for Fiji's ROI Manager) and with --prob "
        "OUT/NAME_prob.tif; then OUT/spores.csv (one row per spore, pixel columns *_px, "
        "micrometre columns *_um/*_um2 when the pixel size is known) and OUT/summary.csv "
        "(counts, pixel size and its source).",
    )
    _add_model_options(p)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="output folder")
    p.add_argument("--recursive", action="store_true",
                   help="also the images in sub-folders, mirrored under OUT (default: only "
                   "the images directly in each folder)")
    p.add_argument("--pixel-size", type=float, metavar="UM",
                   help="micrometres per pixel for every image (default: each TIFF's own "
                   "calibration, from OME-XML, ImageJ metadata or resolution tags, when "
                   "present; else sizes in pixels only)")
    p.add_argument("--channel", type=_channel_list, metavar="N[,N...]",
                   help="channel(s) of multichannel images to segment, 0 = the first: one "
                   "(used as gray) or as many as the model takes (default: the image as it "
                   "is; required for TIFFs with 2 or more than 3 channels)")
    p.add_argument("--max-area", type=int, metavar="PX",
                   help="largest spore area in pixels; larger objects are left out (default: "
                   "no limit)")
    p.add_argument("--exclude-border", action="store_true",
                   help="leave spores that touch the image edge out of the counts, tables, "
                   "labels and ROIs (default: keep them, flagged in touches_border)")
    p.add_argument("--prob", action="store_true", dest="probability",
                   help="also write NAME_prob.tif, the float32 probability (default: off)")
    p.add_argument("--tile", type=int, metavar="PX",
                   help="input tile size, smaller for small GPUs (default: chosen per image, "
                   "at most 1280)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="tiles per model call (default: 2; 1 for images over 2 megapixels, "
                   "which go strip by strip)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads that count and write while the model predicts; 0 = one "
                   "image after the other (default: 2)")
    p.add_argument("--overwrite", action="store_true", help="replace files already in OUT")
    p.set_defaults(func=_predict)


#: unet.count.MIN_AREA, written here so that --help imports no scipy (a test checks they agree)
_MIN_AREA = 16


def _steps(text):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of steps or auto, e.g. 3000; got {text!r}") from None


def _minutes(text):
    if text == "off":
        return text
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not minutes > 0 or math.isinf(minutes):
        raise argparse.ArgumentTypeError(
            f"expected a number of minutes above 0 or off, e.g. 30; got {text!r}")
    return minutes


def _window(text):
    if text in ("auto", "off"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a window in pixels, auto or off, e.g. 61; got {text!r}") from None


def _channel_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a channel number or a comma-separated list, e.g. 0 or 0,1,2; got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _predict(args):
    from .batch import predict_images
    from .run import load_run

    model, _ = load_run(args.model)
    summary = predict_images(
        model,
        args.inputs,
        args.out,
        **_postprocessing(args, model),
        max_area=args.max_area,
        exclude_border=args.exclude_border,
        pixel_size=args.pixel_size,
        channel=args.channel,
        recursive=args.recursive,
        tile=args.tile,
        batch_size=args.batch_size,
        probability=args.probability,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=True,
    )
    total = sum(count for _, count in summary)
    print(f"{len(summary)} images, {total} spores: {args.out}/summary.csv, {args.out}/spores.csv")


# ------------------------------------------------------------------------------ export
def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="write a bioimage.io model package and a TF Serving SavedModel",
        description="Export a trained model for the bioimage tools: OUT/bioimageio/ (rdf.yaml, "
        "weights as a TensorFlow SavedModel and ONNX, test tensors, cover, documentation; "
        "the same zipped as OUT/NAME.bioimageio.zip) for deepImageJ/Fiji, ilastik, QuPath "
        "and bioimage.io, and OUT/serving/1/ (a plain SavedModel) for TensorFlow Serving. "
        "ONNX needs the `export` extra: pip install 'unet-spores[export]'.",
    )
    p.add_argument("run", metavar="RUN", help="run directory, .keras file or shipped model name")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--formats", type=lambda t: tuple(t.split(",")), default=("tensorflow", "onnx"),
                   metavar="F[,F]",
                   help="weight formats of the package: tensorflow, onnx (default: "
                   "tensorflow,onnx)")
    p.add_argument("--pixel-size", type=float, metavar="UM",
                   help="micrometres per pixel of the training images, written on the axes "
                   "(default: none)")
    p.add_argument("--name", help="model name in rdf.yaml (default: from the run)")
    p.add_argument("--no-serving", action="store_false", dest="serving",
                   help="skip the TF Serving SavedModel (default: write it)")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in OUT")
    p.set_defaults(func=_export)


def _export(args):
    from .export import export_model

    result = export_model(args.run, args.out, formats=args.formats, pixel_size=args.pixel_size,
                          name=args.name, serving=args.serving, overwrite=args.overwrite)
    print(f"bioimage.io package: {result['zip']} ({', '.join(result['formats'])})"
          + (f"; TF Serving SavedModel: {result['serving']}" if result.get("serving") else ""))


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
