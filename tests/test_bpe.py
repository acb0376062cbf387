"""The from-scratch byte-level BPE: building blocks, training, encoding, saving (no OpenAI file)."""

import json
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniclip.text.bpe import (
    BYTE_DECODER,
    BYTE_ENCODER,
    EOT,
    SOT,
    BPETokenizer,
    bpe_word,
    bytes_to_unicode,
    clean_text,
    from_json,
    get_stats,
    merge,
    pre_tokenize,
    read_merges,
    to_json,
    train_merges,
    train_merges_naive,
    word_to_symbols,
)

from .text_strategies import UNICODE_TEXT


def make_captions(n, seed=0):
    """n toy captions like "a small red circle in the top left" (varied, seeded)."""
    rng = random.Random(seed)
    sizes = ["small", "large", "tiny", "big", "medium-sized"]
    colors = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    shapes = ["circle", "square", "triangle", "star", "cross", "diamond", "hexagon"]
    places = ["in the top left", "in the top right", "in the bottom left", "at the bottom",
              "in the center", "near the edge", "on the left", "on the right"]
    templates = ["a {s} {c} {h} {p}", "there is a {c} {h} {p}.",
                 "two {c} shapes: a {h} and a {s} {h}", "a photo of a {s} {c} {h}.",
                 "It's a {c} {h}, {p}!", "{n} {c} dots {p}"]
    out = []
    for _ in range(n):
        t = templates[int(rng.random() * len(templates))]
        out.append(t.format(s=rng.choice(sizes), c=rng.choice(colors), h=rng.choice(shapes),
                            p=rng.choice(places), n=rng.randint(2, 12)))
    return out


CAPTIONS = make_captions(2000)


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(CAPTIONS, vocab_size=600)


# ---- building blocks -----------------------------------------------------------------------------
def test_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    assert len(printable) == 188 and len(others) == 68
    for b in printable:
        assert table[b] == chr(b)                 # visible bytes stand for themselves
    for k, b in enumerate(others):
        assert table[b] == chr(256 + k)           # the rest get chr(256), chr(257), ... in order
    for c in table.values():
        assert c.isprintable() and not c.isspace(), c
    assert table[ord(" ")] == "Ġ" and table[0] == "Ā"
    assert BYTE_DECODER == {c: b for b, c in BYTE_ENCODER.items()}


def test_clean_text():
    assert clean_text("  A  Photo\tOF\n a CAT ") == "a photo of a cat"
    assert clean_text("fish &amp;amp; chips &lt;3") == "fish & chips <3"   # unescaped twice
    assert clean_text("CafÃ©") == "café"                                   # ftfy fixes mojibake
    assert clean_text("") == ""


def test_pre_tokenize_follows_clips_pattern():
    assert pre_tokenize("it's a dog's 2024 toy!!") == ["it", "'s", "a", "dog", "'s", "2", "0", "2",
                                                       "4", "toy", "!!"]
    assert pre_tokenize("we'll they've i'm you'd don't") == [
        "we", "'ll", "they", "'ve", "i", "'m", "you", "'d", "don", "'t"]
    assert pre_tokenize("IT'S") == ["IT", "'S"]                             # case-insensitive
    assert pre_tokenize("日本語 x²") == ["日本語", "x", "²"]
    assert pre_tokenize("a<|endoftext|>b") == ["a", EOT, "b"]
    assert pre_tokenize("   ") == []


def test_word_to_symbols_marks_the_end_of_the_word():
    assert word_to_symbols("cat") == ("c", "a", "t</w>")
    assert word_to_symbols("a") == ("a</w>",)
    assert word_to_symbols("é") == ("Ã", "©</w>")
    assert len(word_to_symbols("😀")) == 4                                  # 4 UTF-8 bytes


def test_get_stats_counts_overlapping_pairs_weighted_by_word_count():
    stats = get_stats({("a", "a", "a"): 3, ("a", "b"): 1})
    assert stats == {("a", "a"): 6, ("a", "b"): 1}


def test_merge_goes_left_to_right_without_overlap():
    assert merge(("a", "a", "a"), ("a", "a")) == ("aa", "a")
    assert merge(("a", "b", "a", "b"), ("a", "b")) == ("ab", "ab")
    assert merge(("x", "y"), ("a", "b")) == ("x", "y")
    assert merge((), ("a", "b")) == ()


def test_bpe_word_applies_the_lowest_rank_first_not_the_leftmost():
    ranks = {("b", "c</w>"): 0, ("a", "b"): 1}
    assert bpe_word(("a", "b", "c</w>"), ranks) == ("a", "bc</w>")
    ranks = {("a", "b"): 0, ("b", "c</w>"): 1}
    assert bpe_word(("a", "b", "c</w>"), ranks) == ("ab", "c</w>")
    assert bpe_word(("x</w>",), ranks) == ("x</w>",)


# ---- training ------------------------------------------------------------------------------------
def test_wikipedia_example_aaabdaaabac():
    # Wikipedia: aaabdaaabac -> ZabdZabac (Z=aa) -> ZYdZYac (Y=ab) -> XdXac (X=ZY). "Za" and "ab"
    # tie at 2 after the first merge; the smaller pair wins, ("a", "b") < ("aa", "a"), as in
    # Wikipedia. The word's last symbol carries "</w>", so "c" is "c</w>" here.
    tok = BPETokenizer.train(["aaabdaaabac"], vocab_size=514 + 3)
    assert tok.merges == [("a", "a"), ("a", "b"), ("aa", "ab")]
    ids = tok.encode("aaabdaaabac")
    assert [tok.decoder[i] for i in ids] == ["aaab", "d", "aaab", "a", "c</w>"]      # X d X a c
    # merges take ids 512 (aa), 513 (ab), 514 (aaab); then the specials 515, 516
    assert ids == [514, tok.encoder["d"], 514, tok.encoder["a"], tok.encoder["c</w>"]]
    assert (tok.sot_token, tok.eot_token) == (515, 516)
    assert tok.decode(ids) == "aaabdaaabac "


def test_fast_trainer_matches_the_naive_one_on_captions():
    word_counts = {}
    for text in CAPTIONS[:500] + ["the cat sat on the mat", "aaaa aaa aa bbbabab"]:
        for word in pre_tokenize(clean_text(text)):
            symbols = word_to_symbols(word)
            word_counts[symbols] = word_counts.get(symbols, 0) + 1
    assert train_merges(word_counts, 200) == train_merges_naive(word_counts, 200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(st.sampled_from("abcdé"), min_size=1, max_size=8),
                       st.integers(1, 5), max_size=12),
       st.integers(0, 40))
def test_fast_trainer_matches_the_naive_one_on_random_words(counts, num_merges):
    word_counts = {word_to_symbols(w): c for w, c in counts.items()}
    assert train_merges(word_counts, num_merges) == train_merges_naive(word_counts, num_merges)


def test_training_is_deterministic_and_independent_of_text_order(trained):
    again = BPETokenizer.train(CAPTIONS, vocab_size=600)
    shuffled = CAPTIONS[:]
    random.Random(1).shuffle(shuffled)
    assert again.merges == trained.merges
    assert BPETokenizer.train(shuffled, vocab_size=600).merges == trained.merges


def test_trained_vocabulary_layout(trained):
    assert trained.vocab_size == 600 and len(trained.merges) == 600 - 514
    assert trained.sot_token == 598 and trained.eot_token == 599      # specials are the last ids
    assert trained.decoder[598] == SOT and trained.decoder[599] == EOT
    assert trained.decoder[:256] == list(BYTE_ENCODER.values())
    assert trained.decoder[256:512] == [c + "</w>" for c in BYTE_ENCODER.values()]
    assert all(trained.encoder[s] == i for i, s in enumerate(trained.decoder))
    # frequent caption words became single tokens
    for word in ["the", "a", "photo", "left"]:
        assert len(trained.encode(word)) == 1, word


def test_training_compresses_captions(trained):
    text = " ".join(CAPTIONS[:50])
    assert len(trained.encode(text)) < len(BPETokenizer([]).encode(text)) / 2   # 86 merges halve it


def test_training_stops_early_with_a_warning_when_nothing_is_left_to_merge():
    with pytest.warns(UserWarning, match="only 2 merges were possible .* is 516, not 1000"):
        tok = BPETokenizer.train(["ab ab cd"], vocab_size=1000)     # merges: a+b</w>, c+d</w>
    assert tok.vocab_size == 516 and tok.eot_token == 515


def test_train_rejects_bad_input():
    with pytest.raises(TypeError, match="texts must be a list of str, got str"):
        BPETokenizer.train("a cat", vocab_size=600)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        BPETokenizer.train(["a", 3], vocab_size=600)
    with pytest.raises(ValueError, match="vocab_size must be >= 514, got 513"):
        BPETokenizer.train(["a"], vocab_size=513)
    with pytest.raises(TypeError, match="vocab_size must be an int, got float"):
        BPETokenizer.train(["a"], vocab_size=600.0)


def test_train_verbose_prints_each_merge(capsys):
    BPETokenizer.train(["aaabdaaabac"], vocab_size=517, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["merge 1/3: 'a' + 'a' -> 'aa' (4 times)",
                     "merge 2/3: 'a' + 'b' -> 'ab' (2 times)",
                     "merge 3/3: 'aa' + 'ab' -> 'aaab' (2 times)"]


# ---- encoding and decoding -----------------------------------------------------------------------
def spaced(text):
    """What decode(encode(text)) gives: the cleaned words, each followed by a space."""
    return "".join(w if w in (SOT, EOT) else w + " " for w in pre_tokenize(clean_text(text)))




@settings(max_examples=200, deadline=None)
@given(UNICODE_TEXT)
def test_decode_encode_round_trip_on_any_unicode(trained, text):
    ids = trained.encode(text)
    assert all(0 <= i < trained.eot_token for i in ids)
    decoded = trained.decode(ids)
    assert decoded == spaced(text)
    assert decoded.replace(" ", "") == clean_text(text).replace(" ", "")


def test_round_trip_examples(trained):
    for text in ["", "a small red circle", "Ünïcödé 😀 日本語", "e\u0301\u0301", "\x00\x01 tab\t"]:
        assert trained.decode(trained.encode(text)) == spaced(text)
    assert trained.decode(trained.encode("A Red CIRCLE.")) == "a red circle . "
    assert unicodedata.is_normalized("NFC", trained.decode(trained.encode("e\u0301")))


def test_special_tokens_in_text_become_special_ids(trained):
    ids = trained.encode("<|startoftext|>red<|ENDOFTEXT|>")
    assert ids[0] == trained.sot_token and ids[-1] == trained.eot_token
    assert trained.decode(ids) == "<|startoftext|>red <|endoftext|>"


def test_encode_caches_words(trained):
    trained.clear_cache()
    trained.encode("a red circle, a red star")
    assert set(trained.cache) == {"a", "red", "circle", ",", "star"}
    trained.cache["red"] = (7,)                   # a poisoned entry shows the cache is used
    assert trained.encode("red") == [7]
    trained.clear_cache()
    assert trained.encode("red") != [7]


def test_word_cache_is_bounded():
    tok = BPETokenizer([])
    tok.max_cache_words = 3
    tok.encode("a b c d e")
    assert len(tok.cache) <= 3


def test_encode_decode_reject_bad_input(trained):
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        trained.encode(b"a cat")
    with pytest.raises(ValueError, match=r"ids\[1\] = 600 is outside the vocabulary \[0, 600\)"):
        trained.decode([1, 600])
    with pytest.raises(ValueError, match=r"ids\[0\] = -1"):
        trained.decode([-1])
    with pytest.raises(TypeError, match=r"ids\[0\] must be an int, got float"):
        trained.decode([1.0])
    with pytest.raises(ValueError, match="1-D integer array"):
        trained.decode(np.zeros((2, 3), dtype=np.int64))
    assert trained.decode(np.array([65, 320])) == trained.decode([65, 320]) == "ba "


def test_decode_of_a_broken_byte_sequence_gives_replacement_characters(trained):
    ids = trained.encode("é")                    # two byte symbols: 0xC3, 0xA9 + </w>
    assert trained.decode(ids[:1]) == "\ufffd"


# ---- tokenize ------------------------------------------------------------------------------------
def test_tokenize_layout(trained):
    out = trained.tokenize(["a red star", "two blue circles in the center"], context_length=20)
    assert out.shape == (2, 20) and out.dtype == np.int64
    for row, text in zip(out, ["a red star", "two blue circles in the center"], strict=True):
        ids = trained.encode(text)
        n = len(ids) + 2
        assert row[0] == trained.sot_token and row[n - 1] == trained.eot_token
        assert row[1:n - 1].tolist() == ids and not row[n:].any()
        assert row.argmax() == n - 1              # the text tower pools here
    assert trained.tokenize("a red star", context_length=20).tolist() == out[:1].tolist()
    assert trained.tokenize([]).shape == (0, 77)


def test_tokenize_too_long_and_truncate(trained):
    text = "a red circle " * 10
    n = len(trained.encode(text)) + 2                 # with start and end
    assert trained.tokenize(text, context_length=n)[0, -1] == trained.eot_token   # exactly fits
    with pytest.raises(ValueError, match=rf"texts\[0\] = 'a red circle .*' is {n} tokens long .* "
                                         rf"context_length={n - 1}"):
        trained.tokenize(text, context_length=n - 1)
    cut = trained.tokenize(text, context_length=n - 1, truncate=True)[0]
    full = [trained.sot_token] + trained.encode(text)
    assert cut[:n - 2].tolist() == full[:n - 2] and cut[n - 2] == trained.eot_token


def test_tokenize_rejects_bad_input(trained):
    with pytest.raises(TypeError, match="texts must be a str or a list of str, got int"):
        trained.tokenize(3)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        trained.tokenize(["a", None])
    with pytest.raises(ValueError, match="context_length must be >= 2, got 1"):
        trained.tokenize("a", context_length=1)
    with pytest.raises(TypeError, match="context_length must be an int, got float"):
        trained.tokenize("a", context_length=77.0)
    with pytest.raises(TypeError, match="truncate must be a bool, got int"):
        trained.tokenize("a", truncate=1)


# ---- saving and loading --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["merges.txt", "merges.txt.gz"])
def test_save_load_round_trip(trained, tmp_path, name):
    path = tmp_path / name
    trained.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == trained.merges and loaded.decoder == trained.decoder
    for text in CAPTIONS[:20] + ["Ünïcödé 😀"]:
        assert loaded.encode(text) == trained.encode(text)
    assert list(tmp_path.iterdir()) == [path]          # no temporary file left behind


def test_saved_file_is_readable(trained, tmp_path):
    trained.save(tmp_path / "merges.txt")
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2 miniclip byte-level BPE: 86 merges, vocab_size 600"
    assert lines[1:] == [f"{a} {b}" for a, b in trained.merges]


def test_to_dict_from_dict_round_trip_through_json(trained):
    d = json.loads(json.dumps(trained.to_dict()))
    assert BPETokenizer.from_dict(d).merges == trained.merges
    assert from_json(to_json(trained)).decoder == trained.decoder


def test_load_rejects_malformed_files(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a b\n")
    with pytest.raises(ValueError, match="first line should be a header"):
        read_merges(path)
    path.write_text("#version: 0.2\na b\nc\n")
    with pytest.raises(ValueError, match="line 3: expected two symbols"):
        BPETokenizer.load(path)
    path.write_text("#version: 0.2\nab c\n")
    with pytest.raises(ValueError, match=r"merges\[0\] = \('ab', 'c'\): both symbols must"):
        BPETokenizer.load(path)
    path.write_text("#version: 0.2\na b\na b\n")
    with pytest.raises(ValueError, match=r"makes 'ab', which is already in the vocabulary"):
        BPETokenizer.load(path)
    assert read_merges(path, max_merges=1) == [("a", "b")]
    with pytest.raises(ValueError, match="format 'miniclip-bpe'"):
        BPETokenizer.from_dict({"merges": []})
    with pytest.raises(ValueError, match="unsupported miniclip-bpe version 2"):
        BPETokenizer.from_dict({"format": "miniclip-bpe", "version": 2, "merges": []})


def test_docstring_examples_are_right():
    import doctest

    import miniclip.text.bpe

    result = doctest.testmod(miniclip.text.bpe)
    assert result.attempted >= 15 and result.failed == 0
