"""``python -m miniclip.zeroshot``: kept as a command; the code is in miniclip/pretrained/zeroshot.py."""

import sys

from miniclip.pretrained.zeroshot import main

if __name__ == "__main__":
    sys.exit(main())
