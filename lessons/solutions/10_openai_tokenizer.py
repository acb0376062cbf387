"""Solutions to the exercises of lessons/10_openai_tokenizer.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: eot_pool
def eot_pool(features, tokens):
    return features[np.arange(len(tokens)), tokens.argmax(axis=1)]

# %% exercise: tokenize
def my_tokenize(texts, context_length=77, truncate=False):
    if isinstance(texts, str):
        texts = [texts]
    out = np.zeros((len(texts), context_length), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [tok.sot_token] + tok.encode(text) + [tok.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"{text!r} is {len(ids)} tokens, more than {context_length}")
            ids = ids[:context_length]
            ids[-1] = tok.eot_token
        out[row, :len(ids)] = ids
    return out
