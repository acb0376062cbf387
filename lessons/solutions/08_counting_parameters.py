"""Solutions to the exercises of lessons/08_counting_parameters.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: text_tower_count
def text_tower_count(cfg):
    t = cfg.transformer_width
    return (cfg.vocab_size * t + cfg.context_length * t
            + cfg.transformer_layers * (12 * t * t + 13 * t) + 2 * t + t * cfg.embed_dim)

# %% exercise: activation_count
def activation_count(cfg, batch):
    return batch * cfg.vision_layers * cfg.vision_heads * cfg.vision_tokens ** 2
