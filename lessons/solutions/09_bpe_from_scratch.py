"""Solutions to the exercises of lessons/09_bpe_from_scratch.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: merge_pair
def merge_pair(symbols, pair):
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1]); i += 2
        else:
            out.append(symbols[i]); i += 1
    return tuple(out)

# %% exercise: train
def train(word_counts, num_merges):
    merges = []
    for _ in range(num_merges):
        counts = count_pairs(word_counts)
        if not counts:
            break                                   # every word is a single symbol
        pair = min(counts, key=lambda p: (-counts[p], p))   # most frequent, then smallest
        merges.append(pair)
        word_counts = {merge_pair(w, pair): f for w, f in word_counts.items()}
    return merges

# %% exercise: encode_word
def encode_word(symbols, verbose=False):
    while len(symbols) > 1:
        pairs = set(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        symbols = merge_pair(symbols, best)
        if verbose:
            print(f"rank {ranks[best]:3d} {best} -> {symbols}")
    return symbols

# %% exercise: decode
char_to_byte = {c: b for b, c in table.items()}

def decode(ids):
    symbols = "".join(tok.decoder[i] for i in ids)
    data = bytes(char_to_byte[c] for c in symbols)
    return data.decode("utf-8", errors="replace").replace("</w>", " ")
