"""Tokenizer speed: encode throughput (cold vs warm word cache) and BPE training time.

    python benchmarks/bench_tokenizer.py            # about half a minute on 2 cores

Two corpora, both made here without any download:
  captions   5,000 toy captions ("a small red circle in the top left"), a small vocabulary
  docs       2,612 English sentences from Python's own documentation (pydoc_data.topics)

Encoding uses OpenAI's vocabulary (the copy in the package, or MINICLIP_BPE_PATH; rows for it
are left out if it cannot be read). "cold" is a first pass with
an empty word cache, "warm" the same texts again. "clean only" is ftfy + HTML unescape +
whitespace + lowercase alone, the part of encoding that the cache cannot save.
"""

import os
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ftfy  # noqa: E402
import numpy as np  # noqa: E402
import regex  # noqa: E402

from miniclip.text.bpe import (  # noqa: E402
    BPETokenizer,
    bpe_word,
    clean_text,
    pre_tokenize,
    train_merges,
    train_merges_naive,
    word_to_symbols,
)
from miniclip.text.tokenizer import SimpleTokenizer  # noqa: E402


def make_captions(n, seed=0):
    """n captions exactly as the toy dataset writes them (scenes of 1 or 2 objects)."""
    from miniclip.datasets.attributes import CLASS_PAIRS
    from miniclip.datasets.captions import caption_for
    from miniclip.datasets.scenes import sample_scene

    rng = np.random.default_rng(seed)
    return [caption_for(sample_scene(rng, CLASS_PAIRS, int(rng.integers(1, 3)), 32), rng)
            for _ in range(n)]


def doc_sentences():
    from pydoc_data.topics import topics

    text = " ".join(topics[k] for k in sorted(topics))
    sentences = (" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text))
    return [s for s in sentences if 20 < len(s) < 200]


def best_of(fn, repeat=7):
    """Fastest of `repeat` runs of fn(): (seconds, fn's result)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def encode_all(tok, texts):
    return sum(len(tok.encode(t)) for t in texts)


def main():
    corpora = {"captions": make_captions(5000), "docs": doc_sentences()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}; "
          f"Python {platform.python_version()}, numpy {np.__version__}, ftfy {ftfy.__version__}, "
          f"regex {regex.__version__}")
    for name, texts in corpora.items():
        words = sum(len(pre_tokenize(clean_text(t))) for t in texts)
        print(f"corpus {name}: {len(texts)} texts, {words} words, "
              f"{len({w for t in texts for w in pre_tokenize(clean_text(t))})} distinct")

    # ---- encoding ----
    try:
        openai = SimpleTokenizer()
    except (FileNotFoundError, ValueError) as error:
        openai = None
        print(f"(no OpenAI vocabulary, OpenAI rows skipped: {str(error).split('. Get it')[0]})")
    start = time.perf_counter()
    if openai is not None:
        SimpleTokenizer()
        print(f"SimpleTokenizer() load: {time.perf_counter() - start:.2f} s (48,894 merges, sha256 "
              "check)")
    print()
    print("encode: seconds for the whole corpus (best of 7); tokens/s; clean = ftfy + unescape + "
          "whitespace + lowercase alone")
    print(f"{'tokenizer':<20}{'corpus':<10}{'tokens':>7}{'cold s':>8}{'warm s':>8}{'warm/cold':>10}"
          f"{'cold tok/s':>12}{'warm tok/s':>12}{'clean s':>9}{'clean/warm':>11}")
    tokenizers = {"SimpleTokenizer": openai,
                  "BPETokenizer(2000)": BPETokenizer.train(corpora["docs"], 2000)}
    for tok_name, tok in tokenizers.items():
        if tok is None:
            continue
        for corpus_name, texts in corpora.items():
            def cold(tok=tok, texts=texts):
                tok.clear_cache()
                return encode_all(tok, texts)
            cold_s, n_tokens = best_of(cold)
            warm_s, _ = best_of(lambda tok=tok, texts=texts: encode_all(tok, texts))
            clean_s, _ = best_of(lambda texts=texts: [clean_text(t) for t in texts])
            print(f"{tok_name:<20}{corpus_name:<10}{n_tokens:>7}{cold_s:>8.3f}{warm_s:>8.3f}"
                  f"{cold_s / warm_s:>9.2f}x{n_tokens / cold_s:>12,.0f}{n_tokens / warm_s:>12,.0f}"
                  f"{clean_s:>9.3f}{clean_s / warm_s:>10.0%}")

    # the BPE step alone (no cleaning or splitting), with and without the word cache
    bpe_tok = openai if openai is not None else tokenizers["BPETokenizer(2000)"]
    words = [w for t in corpora["docs"] for w in pre_tokenize(clean_text(t))]
    nocache_s, _ = best_of(lambda: [bpe_word(word_to_symbols(w), bpe_tok.bpe_ranks) for w in words])
    bpe_tok.clear_cache()
    [bpe_tok.encode_word(w) for w in words]
    cached_s, _ = best_of(lambda: [bpe_tok.encode_word(w) for w in words])
    print(f"BPE step alone, {type(bpe_tok).__name__}, the {len(words):,} docs words: no cache "
          f"{nocache_s:.3f} s ({len(words) / nocache_s:,.0f} words/s), warm cache {cached_s:.3f} s "
          f"({len(words) / cached_s:,.0f} words/s): {nocache_s / cached_s:.0f}x")

    # ---- training ----
    print()
    print("train: BPETokenizer.train = prepare (clean, split, count words) + merge loop; the merge "
          "loop also timed with the naive reference trainer (same merges, checked)")
    print(f"{'corpus':<10}{'texts':>6}{'words':>7}{'merges':>8}{'vocab':>7}{'train s':>9}"
          f"{'prepare s':>11}{'merge s':>9}{'naive s':>9}{'naive/fast':>12}")
    for corpus_name, vocab_size, with_naive in [("captions", 1000, True), ("docs", 1000, True),
                                                ("docs", 4000, False)]:
        texts = corpora[corpus_name]
        train_s, tok = best_of(lambda texts=texts, v=vocab_size: BPETokenizer.train(texts, v))

        def prepare(texts=texts):
            counts = {}
            for t in texts:
                for w in pre_tokenize(clean_text(t)):
                    counts[word_to_symbols(w)] = counts.get(word_to_symbols(w), 0) + 1
            return counts
        prepare_s, counts = best_of(prepare)
        n = len(tok.merges)
        fast_s, fast = best_of(lambda c=counts, n=n: train_merges(c, n))
        assert fast == tok.merges
        if corpus_name == "captions":
            caption_merges, caption_vocab = n, vocab_size
        naive_text = ratio = ""
        if with_naive:
            naive_s, naive = best_of(lambda c=counts, n=n: train_merges_naive(c, n), repeat=1)
            assert naive == fast
            naive_text, ratio = f"{naive_s:>9.2f}", f"{naive_s / fast_s:>11.1f}x"
        print(f"{corpus_name:<10}{len(texts):>6}{len(counts):>7}{n:>8}{tok.vocab_size:>7}"
              f"{train_s:>9.2f}{prepare_s:>11.2f}{fast_s:>9.3f}{naive_text:>9}{ratio:>12}")
    print(f"(captions, asked for {caption_vocab}, stop at {caption_merges} merges: by then every "
          "caption word is a single token)")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")    # "only N merges were possible" on the small caption corpus
    main()
