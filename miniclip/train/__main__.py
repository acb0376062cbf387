"""``python -m miniclip.train``: train a CLIP (see ``--help``)."""

import sys

from miniclip.train.loop import main

sys.exit(main())
