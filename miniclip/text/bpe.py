"""Byte-level BPE the way CLIP does it: train, encode, decode, save, load.

A text becomes ids in four steps:

1. clean      ftfy's fix_text, HTML-unescape twice, collapse whitespace, strip, lowercase
                  "A  photo &amp; a CAT"  ->  "a photo & a cat"
2. split      CLIP's regex cuts the text into words: letter runs, single digits, runs of other
              symbols, English contractions (spaces are dropped)
                  "it's 42!"  ->  ["it", "'s", "4", "2", "!"]
3. bytes      each word becomes its UTF-8 bytes, each byte a printable stand-in character, and
              the last symbol gets the end-of-word marker "</w>"
                  "cat"  ->  ("c", "a", "t</w>")        "é" -> ("Ã", "©</w>")
4. merge      learned merges glue adjacent symbols, lowest rank first, until none applies
                  ("c", "a", "t</w>")  ->  ("ca", "t</w>")  ->  ("cat</w>",)

The vocabulary is laid out as OpenAI's: ids 0..255 are the 256 byte symbols, 256..511 the same
symbols with "</w>", then one id per merge in the order learned, then <|startoftext|> and
<|endoftext|>. The end-of-text token is therefore the largest id, which CLIP's text tower uses to
find where to pool (argmax over the token ids).

Training counts every adjacent pair of symbols over all words and merges the most frequent one,
again and again (Sennrich et al. 2016; Wikipedia's "aaabdaaabac" example is in the tests).

Longer than 400 lines because the trainer and the tokenizer share every helper and are
read side by side in lesson 09; most of the length is docstrings with worked examples.
"""

import gzip
import heapq
import html
import json
import os
import warnings
from collections import Counter, defaultdict
from functools import lru_cache
from itertools import pairwise
from numbers import Integral
from pathlib import Path

import ftfy
import numpy as np
import regex

from miniclip.text.merge_queue import bpe_word_heap

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
SPECIAL_TOKENS = (SOT, EOT)
END_OF_WORD = "</w>"

# CLIP's pre-tokeniser: the two special tokens, contractions, a run of letters, ONE digit, a run
# of anything that is neither letter, digit nor whitespace. Whitespace itself is never a token.
CLIP_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"""
    r"""|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE_RUN = regex.compile(r"\s+")


@lru_cache(maxsize=None)
def bytes_to_unicode():
    """Map each byte 0..255 to a printable character, so merges are plain text a person can read.

    Bytes that already print as themselves ("!".."~", "¡".."¬", "®".."ÿ": 188 of them) keep their
    character; the other 68 (space, control bytes, ...) get chr(256), chr(257), ... in order.
    The dict's order is the order of ids 0..255 in the vocabulary.

    >>> table = bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[0], len(table)
    ('a', 'Ġ', 'Ā', 256)
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    byte_values, code_points = printable[:], printable[:]
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            code_points.append(256 + len(code_points) - len(printable))
    return {b: chr(c) for b, c in zip(byte_values, code_points, strict=True)}


BYTE_ENCODER = bytes_to_unicode()                             # byte -> character
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}        # character -> byte


def clean_text(text):
    """CLIP's cleaning: fix mojibake, unescape HTML twice, collapse whitespace, lowercase.

    >>> clean_text("  Caf\\u00c3\\u00a9 &amp;amp;\\tTEA ")
    'café & tea'
    """
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE_RUN.sub(" ", text).strip().lower()


def pre_tokenize(text):
    """Split an already cleaned text into CLIP's words.

    >>> pre_tokenize("it's 42°c... ok")
    ['it', "'s", '4', '2', '°', 'c', '...', 'ok']
    """
    return CLIP_PATTERN.findall(text)


def word_to_symbols(word):
    """A word -> its starting symbols: one per UTF-8 byte, the last one marked as word end.

    >>> word_to_symbols("cat")
    ('c', 'a', 't</w>')
    >>> word_to_symbols("é")            # two UTF-8 bytes, 0xC3 0xA9
    ('Ã', '©</w>')
    """
    chars = [BYTE_ENCODER[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + END_OF_WORD,)


def get_stats(word_counts):
    """Count adjacent symbol pairs over words, each word weighted by how often it occurs.

    >>> get_stats({("a", "a", "b"): 2, ("b", "a"): 1})
    Counter({('a', 'a'): 2, ('a', 'b'): 2, ('b', 'a'): 1})
    """
    stats = Counter()
    for symbols, count in word_counts.items():
        for pair in pairwise(symbols):
            stats[pair] += count
    return stats


def merge(symbols, pair):
    """Replace every occurrence of `pair` in `symbols`, left to right, by the joined symbol.

    >>> merge(("a", "a", "a", "b"), ("a", "a"))
    ('aa', 'a', 'b')
    """
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def bpe_word(symbols, ranks):
    """Encode one word: apply the lowest-ranked (earliest learned) merge present, until none is.

    The textbook version: it rescans the whole word after each merge, O(n^2) for n symbols. The
    tokenizer uses ``merge_queue.bpe_word_heap``, which gives the same symbols in O(n log n).

    >>> ranks = {("a", "t</w>"): 0, ("c", "at</w>"): 1}
    >>> bpe_word(("c", "a", "t</w>"), ranks)
    ('cat</w>',)
    """
    while len(symbols) > 1:
        pairs = set(pairwise(symbols))
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        symbols = merge(symbols, best)
    return symbols


def train_merges_naive(word_counts, num_merges):
    """Reference trainer: recount every pair after every merge. Short, obviously right, slow.

    Ties between equally frequent pairs go to the smaller pair (string order), so the result does
    not depend on the order of the input.

    >>> train_merges_naive({("a", "a", "a", "b", "d", "a", "a", "a", "b", "a", "c</w>"): 1}, 3)
    [('a', 'a'), ('a', 'b'), ('aa', 'ab')]
    """
    word_counts, merges = dict(word_counts), []
    for _ in range(num_merges):
        stats = get_stats(word_counts)
        if not stats:
            break  # every word is a single symbol: nothing left to merge
        pair = min(stats, key=lambda p: (-stats[p], p))  # most frequent, then smallest
        merges.append(pair)
        word_counts = {merge(symbols, pair): count for symbols, count in word_counts.items()}
    return merges


def train_merges(word_counts, num_merges, verbose=False):
    """The same merges as `train_merges_naive`, but each step only touches the words it changes.

    Keeps pair -> count, pair -> indices of words holding it, and a heap of (-count, pair) whose
    stale entries (the count has changed since the push) are skipped when popped.
    """
    words = list(word_counts)                    # symbols of each distinct word, updated in place
    freqs = [word_counts[w] for w in words]      # how often each word occurs
    pair_counts = get_stats(word_counts)
    where = defaultdict(set)                     # pair -> words that contain (or once contained) it
    for i, symbols in enumerate(words):
        for pair in pairwise(symbols):
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale entry
        merges.append(pair)
        if verbose:
            print(f"merge {len(merges)}/{num_merges}: {pair[0]!r} + {pair[1]!r} -> "
                  f"{pair[0] + pair[1]!r} ({-neg_count} times)")
        touched = set()
        for i in where.pop(pair):
            old = words[i]
            new = merge(old, pair)
            if new == old:
                continue  # this word lost the pair to an earlier merge
            for p in pairwise(old):          # take the old word's pairs out ...
                pair_counts[p] -= freqs[i]
                touched.add(p)
            for p in pairwise(new):          # ... and put the new word's pairs in
                pair_counts[p] += freqs[i]
                where[p].add(i)
                touched.add(p)
            words[i] = new
        for p in touched:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
    return merges


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class BPETokenizer:
    """A byte-level BPE tokenizer defined by its list of merges.

    >>> tok = BPETokenizer.train(["a cat", "a cat sat", "the cat"], vocab_size=519)
    >>> tok.merges      # "at</w>" is in cat (3 times) and sat (once): 4, the most frequent pair
    [('a', 't</w>'), ('c', 'at</w>'), ('h', 'e</w>'), ('s', 'at</w>'), ('t', 'he</w>')]
    >>> ids = tok.encode("A cat!")
    >>> [tok.decoder[i] for i in ids], tok.decode(ids)
    (['a</w>', 'cat</w>', '!</w>'], 'a cat ! ')
    >>> tok.vocab_size, tok.sot_token, tok.eot_token
    (519, 517, 518)

    Decoding puts a space after every word, so `decode(encode(text))` is the cleaned text with a
    space wherever a word ends (and none inside the special tokens).
    """

    max_cache_words = 100_000  # the word cache is emptied when it grows past this
    context_length = 77  # what `tokenizer(texts)` pads to; a model's tokenizer sets its own

    def __init__(self, merges):
        merges = [tuple(m) for m in merges]
        vocab = list(BYTE_ENCODER.values())                      # ids 0..255
        vocab += [c + END_OF_WORD for c in vocab]                # ids 256..511
        known = set(vocab)
        for i, merged in enumerate(merges):
            if len(merged) != 2 or not (isinstance(merged[0], str) and isinstance(merged[1], str)):
                raise ValueError(f"merges[{i}] must be a pair of strings, got {merged!r}")
            first, second = merged
            if first not in known or second not in known:
                raise ValueError(f"merges[{i}] = {merged!r}: both symbols must already be in the "
                                 "vocabulary (bytes or earlier merges)")
            if first + second in known:
                raise ValueError(f"merges[{i}] = {merged!r} makes {first + second!r}, which is "
                                 "already in the vocabulary")
            vocab.append(first + second)
            known.add(first + second)
        vocab += list(SPECIAL_TOKENS)                            # the last two ids
        self.merges = merges
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.encoder = {symbol: i for i, symbol in enumerate(vocab)}   # symbol -> id
        self.decoder = vocab                                            # id -> symbol
        self.cache = {}                                                 # word -> tuple of ids

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)})"

    @property
    def vocab_size(self):
        return len(self.decoder)

    @property
    def sot_token(self):
        return self.encoder[SOT]

    @property
    def eot_token(self):
        return self.encoder[EOT]

    # ---- training -------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts, vocab_size, verbose=False):
        """Learn vocab_size - 514 merges from texts (a list of str); returns a new BPETokenizer.

        514 = 256 bytes + 256 bytes with "</w>" + 2 special tokens. When every word has become a
        single symbol before that many merges, training stops there, with a warning.
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        vocab_size = _check_int("vocab_size", vocab_size, 514)
        word_counts = Counter()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
            for word in pre_tokenize(clean_text(text)):
                if word not in SPECIAL_TOKENS:
                    word_counts[word_to_symbols(word)] += 1
        num_merges = vocab_size - 514
        merges = train_merges(word_counts, num_merges, verbose=verbose)
        if len(merges) < num_merges:
            warnings.warn(f"BPETokenizer.train: only {len(merges)} merges were possible (every "
                          f"word is one symbol), so vocab_size is {514 + len(merges)}, not "
                          f"{vocab_size}", stacklevel=2)
        return cls(merges)

    # ---- encoding and decoding ------------------------------------------------------------------
    def encode_word(self, word):
        """One pre-tokenised word -> tuple of ids (cached, as OpenAI's tokenizer does)."""
        ids = self.cache.get(word)
        if ids is None:
            if word in SPECIAL_TOKENS:
                ids = (self.encoder[word],)
            else:
                # bpe_word_heap: the same symbols as bpe_word, in O(n log n) (merge_queue.py)
                symbols = bpe_word_heap(word_to_symbols(word), self.bpe_ranks)
                ids = tuple(self.encoder[s] for s in symbols)
            if len(self.cache) >= self.max_cache_words:
                self.cache.clear()
            self.cache[word] = ids
        return ids

    def encode(self, text):
        """Text -> list of ids (no start/end tokens; `tokenize` adds those)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = []
        for word in pre_tokenize(clean_text(text)):
            ids.extend(self.encode_word(word))
        return ids

    def decode(self, ids):
        """List (or 1-D integer array) of ids -> text; "</w>" becomes a space.

        Byte sequences that are not valid UTF-8 (possible for arbitrary ids) decode to U+FFFD.
        """
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} and "
                                 f"dtype {ids.dtype}")
            ids = ids.tolist()
        symbols = []
        for pos, i in enumerate(ids):
            if isinstance(i, bool) or not isinstance(i, Integral):
                raise TypeError(f"ids[{pos}] must be an int, got {type(i).__name__}")
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids[{pos}] = {i} is outside the vocabulary "
                                 f"[0, {self.vocab_size})")
            symbols.append(self.decoder[i])
        data = bytearray(BYTE_DECODER[c] for c in "".join(symbols))
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")

    def clear_cache(self):
        self.cache.clear()

    def tokenize(self, texts, context_length=77, truncate=False):
        """Texts -> (N, context_length) int64 array: start, ids, end, zeros (OpenAI's semantics).

        A text longer than context_length (start and end included) raises ValueError, unless
        truncate=True: then the first context_length ids are kept and the last becomes the end.

        >>> tok = BPETokenizer([])
        >>> tok.tokenize("hi", context_length=6)
        array([[512,  71, 328, 513,   0,   0]])
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        context_length = _check_int("context_length", context_length, 2)
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate must be a bool, got {type(truncate).__name__}")
        result = np.zeros((len(texts), context_length), dtype=np.int64)   # (N, context_length)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{row}] must be a str, got {type(text).__name__}")
            ids = [self.sot_token] + self.encode(text) + [self.eot_token]
            if len(ids) > context_length:
                if not truncate:
                    shown = text if len(text) <= 80 else text[:77] + "..."
                    raise ValueError(f"texts[{row}] = {shown!r} is {len(ids)} tokens long with the "
                                     f"start and end tokens, more than context_length="
                                     f"{context_length}; pass truncate=True to cut it")
                ids = ids[:context_length]
                ids[-1] = self.eot_token
            result[row, :len(ids)] = ids
        return result

    def __call__(self, texts, context_length=None, truncate=False):
        """The one tokenizer interface of miniclip: ``tokenizer(list_of_str)`` -> (N, T) int64 ids.

        T is ``context_length`` if given, else the tokenizer's own (77 for OpenAI's; a trained
        model's tokenizer knows its model's). Same semantics as `tokenize`.

        >>> BPETokenizer([])(["hi"], context_length=6)
        array([[512,  71, 328, 513,   0,   0]])
        """
        T = self.context_length if context_length is None else context_length
        return self.tokenize(texts, T, truncate)

    # ---- saving and loading ---------------------------------------------------------------------
    def to_dict(self):
        """A JSON-able description (to store inside a checkpoint); see `from_dict`."""
        return {"format": "miniclip-bpe", "version": 1, "merges": [list(m) for m in self.merges]}

    @staticmethod
    def from_dict(d):
        if not isinstance(d, dict) or d.get("format") != "miniclip-bpe" or "merges" not in d:
            raise ValueError("expected a dict from BPETokenizer.to_dict() with format "
                             f"'miniclip-bpe' and 'merges', got {str(d)[:80]!r}")
        if d.get("version") != 1:
            raise ValueError(f"unsupported miniclip-bpe version {d.get('version')!r} (expected 1)")
        return BPETokenizer(d["merges"])

    def save(self, path):
        """Write the merges file: a header line, then one merge per line ("c at</w>").

        Gzipped if the name ends in ".gz". Written to a temporary file, then renamed.
        """
        path = Path(path)
        header = (f"#version: 0.2 miniclip byte-level BPE: {len(self.merges)} merges, "
                  f"vocab_size {self.vocab_size}")
        text = "\n".join([header] + [f"{a} {b}" for a, b in self.merges]) + "\n"
        data = text.encode("utf-8")
        if path.suffix == ".gz":
            data = gzip.compress(data, mtime=0)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @staticmethod
    def load(path, max_merges=None):
        """Read a merges file written by `save` (or OpenAI's); see `read_merges`."""
        return BPETokenizer(read_merges(path, max_merges))


def read_merges(path, max_merges=None):
    """Read a merges file: a header line with "#version", then "first second" per line.

    ".gz" files are gunzipped. max_merges keeps only the first that many merges (OpenAI's file
    holds 262,144 but CLIP uses 48,894). Returns a list of (first, second) pairs.
    """
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    lines = data.decode("utf-8").split("\n")
    if "#version" not in lines[0]:
        raise ValueError(f"{path}: the first line should be a header like '#version: 0.2', "
                         f"got {lines[0][:80]!r}")
    lines = lines[1:]
    if lines and lines[-1] == "":
        lines = lines[:-1]              # the file's final newline
    if max_merges is not None:
        lines = lines[:_check_int("max_merges", max_merges, 0)]
    merges = []
    for number, line in enumerate(lines, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {number}: expected two symbols separated by a space, "
                             f"got {line[:80]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def to_json(tokenizer):
    """Helper for checkpoints: the tokenizer as a JSON string (round trip with `from_json`)."""
    return json.dumps(tokenizer.to_dict(), ensure_ascii=False)


def from_json(text):
    return BPETokenizer.from_dict(json.loads(text))
