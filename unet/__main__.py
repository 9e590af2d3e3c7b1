"""``python -m unet`` runs the command line (see :mod:`unet.cli`)."""

import sys

from .cli import main

sys.exit(main())
