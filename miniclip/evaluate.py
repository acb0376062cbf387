"""``python -m miniclip.evaluate``: kept as a command; the code is in miniclip/train/evaluate.py."""

import sys

from miniclip.train.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
