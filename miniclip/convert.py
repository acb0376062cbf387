"""``python -m miniclip.convert``: kept as a command; the code is in miniclip/pretrained/convert.py."""

import sys

from miniclip.pretrained.convert import main

if __name__ == "__main__":
    sys.exit(main())
