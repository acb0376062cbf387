"""``python -m miniclip.train``: train a CLIP (see ``--help``)."""

import sys

from miniclip.train.cli import main

sys.exit(main())
