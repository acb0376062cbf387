"""``python -m miniclip.train``: train a CLIP (see ``--help``; the command is train/cli.py)."""

import sys

from miniclip.train.cli import main

sys.exit(main())
