"""Solutions to the exercises of lessons/14_zero_shot_and_retrieval.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: class_weights
def my_class_weights(prompt_embeddings):
    unit = prompt_embeddings / np.linalg.norm(prompt_embeddings, axis=-1, keepdims=True)  # (C, P, E)
    mean = unit.mean(axis=1)                                                             # (C, E)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)

# %% exercise: topk_accuracy
def my_topk(scores, labels, k):
    true = scores[np.arange(len(labels)), labels]             # (N,) the true class's score
    rank = (scores >= true[:, None]).sum(axis=1)              # 1 + others at least as high
    return float(np.mean(rank <= k))

# %% exercise: retrieval
def my_retrieval(sim):
    ranks = (sim >= np.diag(sim)[:, None]).sum(axis=1)        # (N,) rank of the right caption
    return {"r1": float(np.mean(ranks <= 1)), "r5": float(np.mean(ranks <= 5)),
            "median": float(np.median(ranks))}
