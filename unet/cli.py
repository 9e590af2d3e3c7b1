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

    parser.add_argument("--version", action="version", version=f"unet {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each command adds its sub-parser here and sets `func`; command bodies import
    # the heavy modules themselves, so that `--help` does not pay for TensorFlow.
    return parser


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
