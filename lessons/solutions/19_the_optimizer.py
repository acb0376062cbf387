"""Solutions to the exercises of lessons/19_the_optimizer.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: adamw_update
def adamw_update(p, g, m, v, t, lr, decay, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2):
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    if decay:
        update = update + weight_decay * p          # decoupled: not divided by sqrt(v)
    return p - lr * update, m, v

# %% exercise: decays
def decays(name, param):
    no_decay = ("positional_embedding", "class_embedding", "logit_scale")
    return param.ndim >= 2 and not name.endswith(no_decay)

# %% exercise: cosine_lr
def my_cosine_lr(step, total_steps, base_lr, warmup_steps=0, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
