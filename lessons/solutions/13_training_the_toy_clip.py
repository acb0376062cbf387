"""Solutions to the exercises of lessons/13_training_the_toy_clip.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: batch_indices
def my_batch(step, n_pairs, batch_size, seed):
    per_epoch = n_pairs // batch_size                      # full batches; the rest is dropped
    epoch, i = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    return order[i * batch_size:(i + 1) * batch_size]

# %% exercise: normalise
def my_normalise(images, mean, std):
    x = images.astype(np.float32) / np.float32(255)                 # (N, R, R, 3) in [0, 1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)   # per channel
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))            # (N, 3, R, R)

# %% exercise: accumulated_loss_and_grads
def accumulated_loss_and_grads(params, cfg, images, tokens, accum_steps):
    parts = micro_batches(len(images), accum_steps)
    # 1. embed every micro-batch, keeping only the embeddings
    img = np.concatenate([vision_forward(params, cfg, images[s])[0] for s in parts])   # (N, E)
    txt = np.concatenate([text_forward(params, cfg, tokens[s])[0] for s in parts])     # (N, E)
    # 2. the whole batch's loss and its gradient for every embedding
    loss, cache = batch_loss_forward(cfg.loss, img, txt, {"logit_scale": params["logit_scale"]})
    dimg, dtxt, grads = batch_loss_backward(cache)
    # 3. forward again with caches, backward each micro-batch's rows, add up
    for s in parts:
        for forward, backward, x, d in ((vision_forward, vision_backward, images, dimg),
                                        (text_forward, text_backward, tokens, dtxt)):
            _, c = forward(params, cfg, x[s])
            for k, g in backward(d[s], c, cfg).items():
                grads[k] = grads[k] + g if k in grads else g
    return loss, grads
