"""Solutions to the exercises of lessons/20_capstone.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.

The capstone asks for answers you already wrote. A line `# %% use: NN_name <id>` stands for the
section <id> of solutions/NN_name.py (tests/test_lessons.py pastes it in): the same code, kept in
one place.
"""

# %% exercise: layers
# %% use: 01_linear_and_gradcheck linear_backward
# %% use: 02_layernorm layernorm_backward
# %% use: 03_activations_and_mlp quick_gelu_backward
# %% use: 04_attention_and_causal_mask attention_backward
# %% use: 06_text_transformer token_embedding_backward

# %% exercise: towers
# %% use: 05_vision_transformer patchify
# %% use: 03_activations_and_mlp mlp_backward
# %% use: 05_vision_transformer block_backward
# %% use: 05_vision_transformer vision_backward
# %% use: 06_text_transformer text_backward

# %% exercise: loss_and_grads
# %% use: 07_contrastive_loss contrastive_backward

def my_loss_and_grads(params, cfg, images, tokens):
    img, c_img = vision_forward(params, cfg, images)                  # (N, E)
    txt, c_txt = text_forward(params, cfg, tokens)                    # (N, E)
    loss = contrastive_loss(img, txt, params["logit_scale"])
    dimg, dtxt, ds = my_contrastive_backward(img, txt, params["logit_scale"])
    grads = {"logit_scale": np.asarray(ds)}
    grads.update(my_vision_backward(dimg, c_img, cfg))
    grads.update(my_text_backward(dtxt, c_txt, cfg))
    return loss, grads

# %% exercise: optimizer
# %% use: 19_the_optimizer adamw_update
# %% use: 19_the_optimizer decays
# %% use: 19_the_optimizer cosine_lr
