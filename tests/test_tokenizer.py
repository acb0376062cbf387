"""OpenAI CLIP compatibility: SimpleTokenizer and tokenize give OpenAI's ids; getting the file.

The expected ids were produced once with OpenAI's own tokenizer, `clip/simple_tokenizer.py` from
the `openai-clip` 1.0.1 package (pip install --no-deps --target /tmp/ref openai-clip; the module
was loaded by its file path, so torch was not needed), on OpenAI's bpe_simple_vocab_16e6.txt.gz
(sha256 924691ac...804a), with ftfy 6.3.1 and regex 2026.5.9: `ref.encode(text)` for each text.
A one-off run also compared 30,000 random texts from `random_text` and 20,000 hypothesis texts
with that reference: all ids and decodes agreed.

OpenAI's file ships inside the package (miniclip/text/vocab/), so every test here runs on any
clone, with nothing beside it.
"""

import hashlib
import json
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from miniclip.text import tokenizer as tk
from miniclip.text.bpe import EOT, SOT, clean_text, pre_tokenize
from miniclip.text.tokenizer import (
    OPENAI_VOCAB_FILENAME,
    OPENAI_VOCAB_SHA256,
    BPETokenizer,
    SimpleTokenizer,
    resolve_bpe_path,
    tokenize,
)

from .text_strategies import UNICODE_TEXT

VOCAB_PATH = tk.PACKAGED_VOCAB


@pytest.fixture(scope="module")
def openai():
    return SimpleTokenizer()


# (text, OpenAI's ids); see the module docstring for how they were produced
OPENAI_CASES = [
    ("a photo of a cat.",
     [320, 1125, 539, 320, 2368, 269]),
    ("A PHOTO OF A DOG",
     [320, 1125, 539, 320, 1929]),
    ("Hello, world! How's it going?",
     [3306, 267, 1002, 256, 829, 568, 585, 1245, 286]),
    ("I can't believe it's not butter; they're sure we'll win, you'd agree, I'm certain.",
     [328, 753, 713, 2649, 585, 568, 783, 6952, 282, 889, 982, 1650, 649, 1342, 1225, 267,
      592, 1896, 5953, 267, 328, 880, 7883, 269]),
    ("rock'n'roll isn’t dead (curly apostrophe)",
     [2172, 262, 333, 262, 3341, 2923, 713, 2747, 263, 20795, 4089, 3121, 19853, 264]),
    ("Tel: +1 (555) 123-4567, pi = 3.14159, 1,000,000 people in 2024!",
     [2226, 281, 266, 272, 263, 276, 276, 276, 264, 272, 273, 274, 268, 275, 276, 277,
      278, 267, 5357, 284, 274, 269, 272, 275, 272, 276, 280, 267, 272, 267, 271, 271,
      271, 267, 271, 271, 271, 1047, 530, 273, 271, 273, 275, 256]),
    ("The year 1999 and the 21st century; 007, 42nd street",
     [518, 935, 272, 280, 280, 280, 537, 518, 273, 272, 545, 4275, 282, 271, 271, 278,
      267, 275, 273, 1764, 2012]),
    ("café naïve résumé Ångström Straße İstanbul",
     [15304, 1097, 35689, 563, 29106, 7054, 4166, 23176, 10352, 807, 7255, 332, 1894, 127,
      253, 324, 328, 16384, 11231]),
    ("Cafe\u0301 with a combining acute, n\u0303 and a\u0308",
     [15304, 593, 320, 23561, 19734, 267, 127, 365, 537, 47276]),
    ("fish &amp; chips &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &quot;double&quot; &amp;amp; twice",
     [2759, 261, 8855, 283, 321, 285, 8911, 34308, 321, 285, 262, 27706, 262, 257, 3200,
      257, 261, 6970]),
    ("CafÃ© and naÃ¯ve and â€œsmart quotesâ€\x9d are mojibake",
     [15304, 537, 1097, 35689, 563, 537, 257, 4115, 5808, 257, 631, 617, 3252, 11878]),
    ("日本語のテキスト and 中文 and 한국어 문장",
     [39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486, 537, 19759, 255,
      29032, 485, 537, 15197, 250, 31871, 255, 31625, 368, 167, 105, 116, 20849, 354]),
    ("Привет, мир! Γειά σου Κόσμε. مرحبا بالعالم. नमस\u094dत\u0947 द\u0941न\u093fय\u093e",
     [26302, 16370, 29503, 110, 22176, 141, 480, 267, 38018, 16701, 141, 478, 256, 138,
      111, 138, 113, 138, 117, 138, 361, 139, 225, 138, 123, 139, 483, 138, 118, 139, 234,
      139, 225, 138, 120, 138, 369, 269, 12986, 10948, 25722, 16378, 22625, 16378, 12973,
      18843, 12973, 29945, 269, 3124, 101, 48254, 28505, 19389, 27263, 25130, 29552,
      39653, 26090, 26721, 37299, 13343]),
    ("emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷 heart ❤\ufe0f done",
     [16327, 12832, 43722, 1315, 25023, 26304, 964, 356, 4859, 16223, 1936, 1752, 1700]),
    ("tabs\x09and\x0anewlines\x0d\x0aand   many     spaces\u3000ideographic\xa0nbsp",
     [29163, 537, 1218, 3418, 537, 1346, 9006, 1909, 78, 4245, 6459, 4393]),
    ("control \x00 \x07 \x1b[31m chars and zero\u200bwidth",
     [3366, 540, 864, 537, 5848, 9844, 23571]),
    ("symbols: @user #hashtag $5 €10 100% x²+y²=z² ∑∫√ ©™®",
     [25476, 281, 287, 7031, 258, 9238, 259, 276, 6309, 272, 271, 272, 271, 271, 260, 343,
      41175, 266, 344, 41175, 284, 345, 41175, 17788, 239, 17788, 104, 17788, 504, 31148,
      29438, 8436]),
    ("url http://example.com/path?q=1&r=two#frag and email a.b@c.de",
     [23464, 15066, 12441, 6228, 269, 2464, 270, 5035, 286, 336, 284, 272, 261, 337, 284,
      1237, 258, 3368, 326, 537, 4462, 320, 269, 321, 287, 322, 269, 654]),
    ("...!!!???---***;;;:::",
     [3002, 11194, 40017, 2154, 12, 9825, 9, 34824, 26, 43818]),
    ("<|startoftext|>a caption between special tokens<|endoftext|>",
     [49406, 320, 11327, 1957, 1689, 23562, 49407]),
    ("SHOUTING <|ENDOFTEXT|> in capitals",
     [26464, 49407, 530, 29579]),
    ("ﬁ ligature, ｆｕｌｌｗｉｄｔｈ letters, and ½ ¼ fractions",
     [3589, 19915, 4490, 267, 9407, 23571, 9181, 267, 537, 33613, 126, 376, 936, 6271]),
    ("supercalifragilisticexpialidocious antidisestablishmentarianism",
     [1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466, 3120, 4262, 7726, 12658,
      1585, 44351]),
    ("", []),
    ("   \t\n  ", []),
    ("a",
     [320]),
    ("'s 's's",
     [568, 568, 568]),
    ("the quick brown fox jumps over the lazy dog " * 3,
     [518, 3712, 2866, 3240, 18911, 962, 518, 10753, 1929, 518, 3712, 2866, 3240, 18911,
      962, 518, 10753, 1929, 518, 3712, 2866, 3240, 18911, 962, 518, 10753, 1929]),
]


@pytest.mark.parametrize("text, expected", OPENAI_CASES, ids=range(len(OPENAI_CASES)))
def test_openai_ids(openai, text, expected):
    assert openai.encode(text) == expected


def test_openai_vocabulary_shape_and_contents(openai):
    assert len(openai.merges) == 48_894 and openai.vocab_size == 49_408
    assert (openai.sot_token, openai.eot_token) == (49406, 49407)
    assert openai.decoder[49406] == SOT and openai.decoder[49407] == EOT
    assert openai.merges[:3] == [("i", "n"), ("t", "h"), ("a", "n")]
    assert openai.merges[-1] == ("jeky", "ll</w>")
    assert openai.decoder[320] == "a</w>" and openai.decoder[2368] == "cat</w>"
    # every symbol in id order, hashed; OpenAI's tokenizer gives the same digest
    digest = hashlib.sha256("\n".join(openai.decoder).encode("utf-8")).hexdigest()
    assert digest == "7cccc44d334555d1ff3c0ac5f0246b428fab2918383e77ee745cf30d41010b78"


def test_openai_ids_for_a_long_text_and_a_long_word(openai):
    assert openai.encode("a photo of a cat. " * 400) == [320, 1125, 539, 320, 2368, 269] * 400
    word = "pneumonoultramicroscopicsilicovolcanoconiosis"
    middle = [749, 20253, 9800, 535, 532, 1065, 901, 1556, 13697, 9916, 78, 616, 3167, 564, 588,
              3855]
    assert openai.encode(word * 10) == [28714] + middle * 9 + middle[:-5] + [39031, 13903]



PIECES = [
    "a", "photo", "of", "the", "cat", "Dog", "DON'T", "it's", "we're", "they've", "I'm", "you'll",
    "he'd", "isn’t", "rock'n'roll", "3.14", "1,000,000", "2024-01-31", "12:30pm", "½", "²", "٣",
    "café", "naïve", "Ångström", "résumé", "e\u0301", "n\u0303", "a\u0308\u0304", "ﬁne",
    "Straße", "İstanbul", "ΣΊΣΥΦΟΣ", "Привет", "мир", "مرحبا", "नमस्ते", "ไทย", "한국어",
    "日本語", "中文字符", "ｆｕｌｌｗｉｄｔｈ", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "©", "™",
    "&amp;", "&lt;b&gt;", "&#39;", "&quot;", "&nbsp;", "&amp;amp;", "&eacute;", "&#x1F600;",
    "CafÃ©", "naÃ¯ve", "â€œquotedâ€\x9d", "Ã©tÃ©", "\x00", "\x07", "\x1b[31m", "\u200b",
    "\u202e", "\ufeff", "\t", "\n", "\r\n", " ", "  ", "\u3000", "\xa0", "...", "?!", "--",
    "—", "«»", "@user", "#tag", "http://x.y/z?q=1&r=2", "<|startoftext|>", "<|endoftext|>",
    "<|ENDOFTEXT|>", "</w>", "<b>", "$5", "€10", "100%", "x²+y²", "∑∫", "\U0001d400",
    "\ud7ff", "\U0010ffff", "\x85", "\x1c", "'s", "'", "''", "\\", "`", "~",
]


def random_text(rng):
    """A random text from PIECES and random code points, built from rng.random() only."""
    parts = []
    for _ in range(int(rng.random() * 12)):
        r = rng.random()
        if r < 0.75:
            parts.append(PIECES[int(rng.random() * len(PIECES))])
        else:  # a random code point below U+30000: surrogates, and code points Unicode 3.2 leaves
            # unassigned, become "?". Newer Unicode versions assign some of those as letters, and
            # the regex module's tables (so OpenAI's tokenizer too) follow its own version.
            cp = int(rng.random() * 0x30000)
            assigned = not 0xD800 <= cp < 0xE000 and unicodedata.ucd_3_2_0.category(chr(cp)) != "Cn"
            parts.append(chr(cp) if assigned else "?")
        parts.append(" " if rng.random() < 0.6 else "")
    return "".join(parts)


def test_openai_ids_and_decodes_on_2000_random_texts(openai):
    # OpenAI's tokenizer (clip/simple_tokenizer.py of openai-clip 1.0.1, loaded by path) on the
    # same 2000 texts gives these digests (25,627 ids in all), with regex 2026.5.9 and 2026.11.15
    rng = random.Random(2024)
    texts = [random_text(rng) for _ in range(2000)]
    ids = [openai.encode(text) for text in texts]
    decoded = [openai.decode(i) for i in ids]
    assert sum(map(len, ids)) == 25_627
    assert (hashlib.sha256(json.dumps(ids).encode()).hexdigest()
            == "02367d878fe70f120854ff93d2816723893bc97f34f6f37679fa8d4afcd44bf5")
    assert (hashlib.sha256(json.dumps(decoded).encode()).hexdigest()
            == "064a8c2c967ea23214aa383b4bea5119b344b76bafb67d54bd17d3b6117b20f8")




@settings(max_examples=300, deadline=None)
@given(UNICODE_TEXT)
def test_openai_round_trip_on_any_unicode(openai, text):
    ids = openai.encode(text)
    words = pre_tokenize(clean_text(text))
    # Only a special token written in the text itself ("<|ENDOFTEXT|>": the text is lowercased
    # first, as OpenAI's is) may encode to a special id; every other id is an ordinary one.
    n_specials = sum(w in (SOT, EOT) for w in words)
    assert all(0 <= i < 49408 for i in ids) and sum(i >= 49406 for i in ids) == n_specials
    decoded = openai.decode(ids)
    assert decoded == "".join(w if w in (SOT, EOT) else w + " " for w in words)
    assert decoded.replace(" ", "") == clean_text(text).replace(" ", "")


# ---- tokenize ------------------------------------------------------------------------------------
def test_tokenize_a_photo_of_a_cat():
    out = tokenize("a photo of a cat.")
    assert out.shape == (1, 77) and out.dtype == np.int64
    assert out[0].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407] + [0] * 69
    assert out[0].argmax() == 7                     # the text tower pools at the end token


def test_tokenize_batch_and_context_length(openai):
    texts = ["a photo of a cat.", "A PHOTO OF A DOG", ""]
    out = tokenize(texts, context_length=10)
    assert out.tolist() == [[49406, 320, 1125, 539, 320, 2368, 269, 49407, 0, 0],
                            [49406, 320, 1125, 539, 320, 1929, 49407, 0, 0, 0],
                            [49406, 49407, 0, 0, 0, 0, 0, 0, 0, 0]]
    assert np.array_equal(openai.tokenize(texts, context_length=10), out)


def test_tokenize_too_long_raises_unless_truncate():
    exact = "a photo of a cat. " * 12 + "a photo of a"    # 12 * 6 + 4 = 76 ids, 78 tokens
    assert tokenize(exact, context_length=78)[0, -1] == 49407
    with pytest.raises(ValueError, match=r"texts\[0\] = 'a photo of a cat\. a photo.*' is 78 "
                                         r"tokens long .* context_length=77; pass truncate=True"):
        tokenize(exact)
    with pytest.raises(ValueError, match=r"texts\[1\] = .* is 2402 tokens long"):
        tokenize(["ok", "a photo of a cat. " * 400])
    cut = tokenize(["ok", "a photo of a cat. " * 400], truncate=True)
    assert cut[0, :3].tolist() == [49406, 2481, 49407]             # "ok" is 2481
    assert cut[1].tolist() == [49406] + ([320, 1125, 539, 320, 2368, 269] * 13)[:75] + [49407]


def test_tokenize_rejects_bad_input():
    with pytest.raises(TypeError, match="texts must be a str or a list of str, got bytes"):
        tokenize(b"a cat")
    with pytest.raises(TypeError, match=r"texts\[0\] must be a str, got int"):
        tokenize([1])
    with pytest.raises(ValueError, match="context_length must be >= 2, got 0"):
        tokenize("a", context_length=0)


# ---- finding and checking the file ---------------------------------------------------------------
def test_the_vocabulary_ships_inside_the_package_with_its_license(monkeypatch):
    monkeypatch.delenv("MINICLIP_BPE_PATH", raising=False)
    assert resolve_bpe_path() == VOCAB_PATH
    assert VOCAB_PATH.parent.parent == Path(tk.__file__).parent          # miniclip/text/vocab/
    assert hashlib.sha256(VOCAB_PATH.read_bytes()).hexdigest() == OPENAI_VOCAB_SHA256
    license_text = (VOCAB_PATH.parent / "LICENSE").read_text()
    assert "MIT License" in license_text and "Copyright (c) 2021 OpenAI" in license_text


def test_missing_file_errors_name_the_path_and_its_source(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"not found at .*nope.gz \(from the bpe_path "
                                                r"argument\)"):
        SimpleTokenizer(tmp_path / "nope.gz")
    monkeypatch.setenv("MINICLIP_BPE_PATH", str(tmp_path / "env.gz"))
    with pytest.raises(FileNotFoundError, match="env.gz \\(from the environment variable "
                                                "MINICLIP_BPE_PATH\\)"):
        tokenize("a cat")
    monkeypatch.delenv("MINICLIP_BPE_PATH")
    monkeypatch.setattr(tk, "PACKAGED_VOCAB", tmp_path / "gone.gz")
    with pytest.raises(FileNotFoundError, match=r"gone.gz \(from miniclip's package data"):
        SimpleTokenizer()


def test_argument_beats_environment_beats_package(tmp_path, monkeypatch):
    (tmp_path / "env.gz").write_bytes(b"x")
    (tmp_path / "arg.gz").write_bytes(b"x")
    monkeypatch.setenv("MINICLIP_BPE_PATH", str(tmp_path / "env.gz"))
    assert resolve_bpe_path() == tmp_path / "env.gz"                      # env beats package
    assert resolve_bpe_path(tmp_path / "arg.gz") == tmp_path / "arg.gz"   # argument beats env


def test_wrong_file_is_rejected_by_its_sha256(tmp_path):
    fake = tmp_path / OPENAI_VOCAB_FILENAME
    BPETokenizer([("a", "b")]).save(fake)          # a valid merges file, but not OpenAI's
    with pytest.raises(ValueError, match=r"not OpenAI's .* its sha256 is [0-9a-f]{64}, "
                                         r"expected 924691ac"):
        SimpleTokenizer(fake)
    assert BPETokenizer.load(fake).merges == [("a", "b")]   # it is still a fine BPETokenizer file


def test_env_var_selects_the_file_for_tokenize(tmp_path, monkeypatch):
    copy = tmp_path / "copy.gz"
    copy.write_bytes(VOCAB_PATH.read_bytes())
    monkeypatch.setenv("MINICLIP_BPE_PATH", str(copy))
    assert tokenize("a cat")[0, :4].tolist() == [49406, 320, 2368, 49407]
    assert tk._default_tokenizer(str(copy)).bpe_path == copy


def test_cli_encode(capsys):
    tk.main(["a photo of a cat."])
    out = capsys.readouterr().out
    assert "[320, 1125, 539, 320, 2368, 269]" in out and "'cat</w>'" in out


def test_docstring_examples_are_right():
    import doctest

    result = doctest.testmod(tk)
    assert result.attempted == 5 and result.failed == 0


def test_special_token_strings_in_text_encode_as_specials(openai):
    """As in OpenAI's tokenizer: the text is lowercased, so any casing of '<|endoftext|>' in a
    text becomes the end-of-text id (found by hypothesis)."""
    assert openai.encode("<|ENDOFTEXT|>") == [49407]
    assert openai.encode("a <|EndOfText|> b") == [320, 49407, 321]


def test_the_vocabulary_is_package_data_so_a_plain_install_has_it():
    """`pip install .` (not editable) copies only declared package data: the file must be named."""
    import tomllib

    root = Path(tk.__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert set(data["miniclip.text"]) >= {"vocab/bpe_simple_vocab_16e6.txt.gz", "vocab/LICENSE"}
