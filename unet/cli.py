"""The command line: ``python -m unet <command> ...`` (or the ``unet`` script).

Exit codes: 0 on success, 2 with one line on stderr for a user mistake (bad
argument, missing or unreadable input, an output that already exists), 1 for
anything unexpected (with its traceback, since that is a bug worth reporting).
"""

from __future__ import annotations

import argparse
import os
import sys

class UserError(Exception):
    """A mistake the user can fix; the CLI prints its message and exits with 2."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m unet",
        description="U-Net segmentation of microscope images: data, training, prediction, counting.",
    )
    from . import __version__
    from .spores import DEFAULT_COUNTS, FIELD_SIZE  # numpy only

    parser.add_argument("--version", action="version", version=f"unet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each command adds its sub-parser here and sets `func`; command bodies import
    # the heavy modules themselves, so that `--help` does not pay for TensorFlow.

    gen = commands.add_parser(
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
    return parser


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


def main(argv=None):
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad arguments
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except (UserError, ValueError, OSError) as error:
        message = str(error) or error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
