"""CLIP's tokenizer: OpenAI's vocabulary on top of miniclip's byte-level BPE (`miniclip.bpe`).

    >>> tok = SimpleTokenizer()                     # finds OpenAI's merges file, checks its sha256
    >>> tok.encode("a photo of a cat.")
    [320, 1125, 539, 320, 2368, 269]
    >>> tokenize(["a photo of a cat."])[0, :9]      # (N, 77) int64: start, ids, end, zeros
    array([49406,   320,  1125,   539,   320,  2368,   269, 49407,     0])

OpenAI's merges file `bpe_simple_vocab_16e6.txt.gz` (MIT License, see vocab/LICENSE) ships
inside the package, in miniclip/text/vocab/, as it does in OpenAI's `clip` and in OpenCLIP. Its
sha256 is checked when a tokenizer is built. Another copy can be used through the `bpe_path`
argument or the environment variable MINICLIP_BPE_PATH.

    python -m miniclip.text.tokenizer "a photo of a cat."   # OpenAI's ids and symbols
"""

import argparse
import hashlib
import os
from functools import lru_cache
from numbers import Integral
from pathlib import Path

from miniclip.text.bpe import BPETokenizer, clean_text, pre_tokenize, read_merges  # noqa: F401 (re-exported)

OPENAI_VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
OPENAI_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
OPENAI_NUM_MERGES = 48_894            # OpenAI uses the first 49152 - 256 - 2 lines of merges
OPENAI_VOCAB_SIZE = 49_408            # 512 byte symbols + 48,894 merges + 2 special tokens
ENV_VAR = "MINICLIP_BPE_PATH"
PACKAGED_VOCAB = Path(__file__).resolve().parent / "vocab" / OPENAI_VOCAB_FILENAME


def resolve_bpe_path(bpe_path=None):
    """Where OpenAI's merges file is: bpe_path, else $MINICLIP_BPE_PATH, else the packaged copy.

    Raises FileNotFoundError, naming the path and where it came from, if it is not there.
    """
    if bpe_path is not None:
        path, source = Path(bpe_path), "the bpe_path argument"
    elif os.environ.get(ENV_VAR):
        path, source = Path(os.environ[ENV_VAR]), f"the environment variable {ENV_VAR}"
    else:
        path, source = PACKAGED_VOCAB, "miniclip's package data (a broken install?)"
    if not path.is_file():
        raise FileNotFoundError(f"OpenAI's BPE vocabulary was not found at {path} (from {source})")
    return path


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def check_openai_vocab(data, where):
    """Raise ValueError unless `data` (bytes) is OpenAI's merges file."""
    digest = sha256_of(data)
    if digest != OPENAI_VOCAB_SHA256:
        raise ValueError(
            f"{where} is not OpenAI's {OPENAI_VOCAB_FILENAME} (corrupt or a different file): its "
            f"sha256 is {digest}, expected {OPENAI_VOCAB_SHA256}")


class SimpleTokenizer(BPETokenizer):
    """OpenAI CLIP's tokenizer: the same ids as `clip.simple_tokenizer.SimpleTokenizer`.

    48,894 merges, vocab_size 49,408, sot_token 49406, eot_token 49407. Everything else
    (encode, decode, tokenize, ``tokenizer(texts)``, the word cache) is `BPETokenizer`'s.
    """

    def __init__(self, bpe_path=None, context_length=77):
        path = resolve_bpe_path(bpe_path)
        check_openai_vocab(path.read_bytes(), str(path))
        super().__init__(read_merges(path, max_merges=OPENAI_NUM_MERGES))
        self.bpe_path = path
        self.context_length = context_length  # tokenizer(texts) -> (N, context_length)


class ModelTokenizer(BPETokenizer):
    """A BPE tokenizer that knows its model's context length: the one a trained model carries
    (merges learned on its captions, saved in its checkpoint).

    Like every tokenizer of miniclip it is called on a list of texts:

    >>> tok = ModelTokenizer([], context_length=6)
    >>> tok(["hi"])                                  # (1, 6): start, h, i, end, zeros
    array([[512,  71, 328, 513,   0,   0]])
    """

    def __init__(self, merges, context_length: int):
        super().__init__(merges)
        if isinstance(context_length, bool) or not isinstance(context_length, Integral) \
                or context_length < 2:
            raise ValueError(f"context_length must be an int >= 2, got {context_length!r}")
        self.context_length = int(context_length)

    def tokenize(self, texts, context_length=None, truncate=False):
        T = self.context_length if context_length is None else context_length
        return super().tokenize(texts, T, truncate)


@lru_cache(maxsize=4)
def _default_tokenizer(path):
    return SimpleTokenizer(path)


def tokenize(texts, context_length=77, truncate=False):
    """OpenAI's `clip.tokenize`: texts -> (N, context_length) int64 array of OpenAI's ids.

    Each row: 49406, the text's ids, 49407, then zeros. A str or a list of str. A text that does
    not fit raises ValueError naming it and its length, unless truncate=True (keep the first
    context_length ids and make the last one 49407). Uses a SimpleTokenizer built once per
    vocabulary path (see `resolve_bpe_path`).
    """
    return _default_tokenizer(str(resolve_bpe_path())).tokenize(texts, context_length, truncate)


def main(argv=None):
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``)."""
    from miniclip.cli import run_main

    return run_main(_main, argv)


def _main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m miniclip.text.tokenizer",
                                     description="show OpenAI's ids and symbols for a text")
    parser.add_argument("text")
    args = parser.parse_args(argv)
    tok = SimpleTokenizer()
    ids = tok.encode(args.text)
    print("ids:    ", ids)
    print("symbols:", [tok.decoder[i] for i in ids])


if __name__ == "__main__":
    raise SystemExit(main())
