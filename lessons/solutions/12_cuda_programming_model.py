"""Solutions to the exercises of lessons/12_cuda_programming_model.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: combine_lse
def combine(m1, l1, m2, l2):
    m = np.maximum(m1, m2)
    return m, l1 * np.exp(m1 - m) + l2 * np.exp(m2 - m)

# %% exercise: row_logsumexp
@cuda.jit
def row_logsumexp(scores, lse):
    i = cuda.grid(1)
    if i < scores.shape[0]:
        m, l = -math.inf, 0.0
        for j in range(scores.shape[1]):
            s = scores[i, j]
            if s > m:                       # new maximum: rescale what was summed so far
                l = l * math.exp(m - s) + 1.0
                m = s
            else:
                l += math.exp(s - m)
        lse[i] = m + math.log(l)
