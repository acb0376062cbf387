"""Solutions to the exercises of lessons/17_what_clip_cannot_see.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise
cell with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: bag_of_words
def bag_of_words_embed(token_embedding, tokens):
    # counts (N, V): how often each token occurs in each caption, padding (id 0) left out. The
    # sum goes through the counts, so not even the rounding depends on the order of the words.
    V = token_embedding.shape[0]
    counts = np.stack([np.bincount(row[row != 0], minlength=V) for row in tokens])
    return (counts @ token_embedding) / counts.sum(axis=1, keepdims=True)

# %% exercise: hard_negative_loss
def hard_negative_loss(image_features, text_features, logit_scale):
    N = image_features.shape[0]
    x = image_features / np.linalg.norm(image_features, axis=1, keepdims=True)
    y = text_features / np.linalg.norm(text_features, axis=1, keepdims=True)
    z = np.exp(logit_scale) * x @ y.T                        # (N, N + K)

    def logsumexp(a, axis):
        top = a.max(axis=axis, keepdims=True)
        return (top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True))).squeeze(axis)

    diag = np.diag(z[:, :N])                                 # z_ii
    image_to_text = np.mean(logsumexp(z, axis=1) - diag)     # over all N + K texts
    text_to_image = np.mean(logsumexp(z[:, :N], axis=0) - diag)  # true captions, N images
    return 0.5 * (image_to_text + text_to_image)

# %% exercise: relation_negative
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above",
            "over": "under", "under": "over"}


def relation_negative(caption):
    return " ".join(OPPOSITE.get(word, word) for word in caption.split(" "))
