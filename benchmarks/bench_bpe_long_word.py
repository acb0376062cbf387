"""One long word through BPE's merge loop: the textbook ``bpe_word`` (rescans the word after every
merge, O(n^2)) against ``merge_queue.bpe_word_heap`` (a heap of pairs, O(n log n)), which the
tokenizer uses. Both on OpenAI's merges; the same symbols are checked for every size.

    python benchmarks/bench_bpe_long_word.py

Each size is timed in turn for both (best of 3; the naive one only up to 10,000 characters).
"""

import platform
import random
import sys
import time

from miniclip.text.bpe import bpe_word, word_to_symbols
from miniclip.text.merge_queue import bpe_word_heap
from miniclip.text.tokenizer import SimpleTokenizer


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    print(f"# {platform.machine()}, Python {sys.version.split()[0]}")
    ranks = SimpleTokenizer().bpe_ranks
    print("| characters | word | naive s | heap s | naive / heap |")
    print("|---:|---|---:|---:|---:|")
    for n in (1_000, 5_000, 10_000, 40_000):
        letters = random.Random(n).choices("abcdefghijklmnopqrstuvwxyz", k=n)
        for kind, word in (("'ab' repeated", "ab" * (n // 2)),
                           ("a long word repeated", ("pneumonoultramicroscopic" * n)[:n]),
                           ("random letters", "".join(letters))):
            symbols = word_to_symbols(word)
            heap_s, heap_out = best_of(lambda s=symbols: bpe_word_heap(s, ranks))
            if n <= 10_000:
                naive_s, naive_out = best_of(lambda s=symbols: bpe_word(s, ranks), repeat=1)
                assert naive_out == heap_out, (n, kind)
                ratio = f"{naive_s / heap_s:,.0f}x"
                naive = f"{naive_s:.3f}"
            else:
                naive, ratio = "(skipped)", ""
            print(f"| {n:,} | {kind} | {naive} | {heap_s:.4f} | {ratio} |")
    tok = SimpleTokenizer()
    word = "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz", k=40_000))
    seconds, ids = best_of(lambda: tok.encode(word), repeat=1)
    print(f"\nSimpleTokenizer().encode of a 40,000-character word of random letters: "
          f"{seconds:.3f} s ({len(ids):,} ids)")


if __name__ == "__main__":
    main()
