"""Hypothesis strategies for text, shared by the tokenizer tests."""

from hypothesis import strategies as st

# arbitrary Unicode, plus the cases a tokenizer most often gets wrong
UNICODE_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),                           # anything
    st.text(st.sampled_from("😀👍🏽❤️🇫🇷\u200d🙂 "), max_size=20),                   # emoji
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.just(" "),
            max_size=20),                                                          # CJK
    st.text(st.characters(categories=["Mn", "Ll"]) | st.just(" "), max_size=20),  # combining
    st.text(st.characters(categories=["Cc", "Cf", "Zs"]) | st.sampled_from("ab"), max_size=20),
    st.just(""),
)
