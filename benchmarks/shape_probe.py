"""Does a trained model's image embedding hold the shape? A linear probe, per composition.

Not a speed benchmark: a question asked of a trained run. Zero-shot accuracy mixes two sides (the
image embedding and the caption's); this asks the image side alone. A softmax regression from the
image embedding to the shape (7 classes) is fitted on one-object *training* images, which hold the
seen compositions only, and applied to the test and held-out splits, composition by composition.
Where the probe fails on a held-out composition, the image tower has not put that shape into the
embedding in a way that carries over from the other colours, whatever the text tower does
(docs/toy_world_experiments.md, "Where the held-out gap lives").

    python benchmarks/shape_probe.py runs/toy-64-stem
    python benchmarks/shape_probe.py runs/toy --train-images 5000
"""

import argparse

import numpy as np

from miniclip.datasets import load_split
from miniclip.datasets.attributes import COLOURS, SHAPES
from miniclip.pretrained.checkpoint import load_checkpoint, load_trained, resolve_checkpoint_path
from miniclip.train.evaluate import encode_images, evaluate


def one_object_embeddings(model, preprocess, data_dir, split, limit):
    """The first ``limit`` one-object images of a split -> (embeddings (N, E), shape ids (N,),
    colour ids (N,))."""
    images = load_split(data_dir, split)
    rows = np.flatnonzero(np.asarray(images.n_objects) == 1)[:limit]
    features = encode_images(model, preprocess, images.images[rows])
    return (features.astype(np.float64), images.shape[rows, 0].astype(int),
            images.colour[rows, 0].astype(int))


def probe_loss_and_grads(x, labels, weights, bias, l2=1e-4):
    """Mean cross-entropy of softmax(x W + b) plus (l2 / 2) |W|^2, and its gradients.
    x (N, E), labels (N,) int, weights (E, C), bias (C,) -> (loss, dW (E, C), db (C,))."""
    logits = x @ weights + bias  # (N, C)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(len(x))
    loss = -log_probs[rows, labels].mean() + 0.5 * l2 * np.sum(weights * weights)
    d_logits = np.exp(log_probs)  # softmax; minus the one-hot, over N: d(mean loss)/d(logits)
    d_logits[rows, labels] -= 1.0
    d_logits /= len(x)
    return loss, x.T @ d_logits + l2 * weights, d_logits.sum(axis=0)


def fit_softmax_probe(x, labels, n_classes, steps=800, lr=2.0, l2=1e-4):
    """Full-batch gradient descent on ``probe_loss_and_grads``. -> W (E, C), b (C,)."""
    weights, bias = np.zeros((x.shape[1], n_classes)), np.zeros(n_classes)
    for _ in range(steps):
        _, d_weights, d_bias = probe_loss_and_grads(x, labels, weights, bias, l2)
        weights -= lr * d_weights
        bias -= lr * d_bias
    return weights, bias


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run folder or checkpoint of python -m miniclip.train")
    ap.add_argument("--data", help="toy dataset folder (default: the one the run trained on)")
    ap.add_argument("--train-images", type=int, default=20000,
                    help="one-object training images the probe is fitted on")
    args = ap.parse_args(argv)
    if args.train_images < 100:
        ap.error(f"--train-images must be at least 100, got {args.train_images}")
    path = resolve_checkpoint_path(args.run)
    data_dir = args.data or load_checkpoint(path).data.get("dir")
    if not data_dir:
        ap.error(f"{path} does not say which dataset it trained on; give --data")
    model, preprocess, tokenizer = load_trained(path)
    # zero-shot per held-out composition, to set beside the probe: name -> share right
    _, details = evaluate(model, preprocess, tokenizer, data_dir, generalisation=False)
    held, names = details["heldout"], details["classnames"]
    zero_shot = {names[k]: float(np.mean(held["predictions"][held["labels"] == k] == k))
                 for k in np.unique(held["labels"])}

    x, shape, _ = one_object_embeddings(model, preprocess, data_dir, "train", args.train_images)
    weights, bias = fit_softmax_probe(x, shape, len(SHAPES))
    fitted = np.mean((x @ weights + bias).argmax(1) == shape)
    print(f"probe fitted on {len(x):,} one-object training images: {fitted:.1%} right on them")
    for split in ("test", "heldout"):
        x, shape, colour = one_object_embeddings(model, preprocess, data_dir, split, 2000)
        predicted = (x @ weights + bias).argmax(1)
        print(f"{split}: shape read right by the probe in {np.mean(predicted == shape):.1%} of "
              f"{len(x):,} images")
        if split != "heldout":
            continue
        for c, s in sorted(set(zip(colour.tolist(), shape.tolist(), strict=True))):
            here = (colour == c) & (shape == s)
            counts = np.bincount(predicted[here], minlength=len(SHAPES))
            wrong = ", ".join(f"{SHAPES[k]} {n}" for k, n in enumerate(counts) if n and k != s)
            name = f"{COLOURS[c]} {SHAPES[s]}"
            print(f"  {name}: probe {np.mean(predicted[here] == s):.1%} of {here.sum()}"
                  + (f" (read as: {wrong})" if wrong else "")
                  + (f"; zero-shot {zero_shot[name]:.1%}" if name in zero_shot else ""))

if __name__ == "__main__":
    main()
