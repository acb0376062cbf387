"""Zero-shot classification: which of these captions fits the image best?

    python -m miniclip.zeroshot --weights data/clip-vit-base-patch32 cat.jpg dog.png \\
        --labels "a dog,a cat,a diagram" [--templates | --template-file FILE] [--top K]

CLIP never saw these labels as classes. Each label becomes a text embedding (a "classifier
row"), each image an image embedding, and the probabilities are a softmax over the scaled
cosine similarities, exactly CLIP's logits:

    probs[i, k] = softmax_k( exp(logit_scale) * <img_i / |img_i|, row_k> )

With ``--templates`` (or ``--template-file``) each label is put into several sentences
("a photo of a {}.", ...) and its row is the mean of their L2-normalised embeddings,
normalised again (prompt ensembling, as in the CLIP paper). Without it the label text is used
as it is, so the probabilities are the softmax of the model's ``logits_per_image``.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

from miniclip.model.loss import log_softmax
from miniclip.nn.normalize import l2_normalize_forward

# A few prompt shapes for photographs and drawings; pass a file for your own (one per line, {}).
DEFAULT_TEMPLATES = (
    "a photo of {}.",
    "a photo of a {}.",
    "a close-up photo of a {}.",
    "a blurry photo of a {}.",
    "a drawing of a {}.",
    "a painting of a {}.",
    "a rendering of a {}.",
    "a black and white photo of a {}.",
)


def _unit_rows(x):
    return l2_normalize_forward(x)[0]


def is_template(text) -> bool:
    """A string with exactly one empty replacement field '{}' and nothing else str.format would
    interpret ('{x}', '{0}', '{:>3}', an unpaired brace)."""
    if not isinstance(text, str):
        return False
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text)
                  if name is not None]
    except ValueError:  # "Single '}' encountered", "unmatched '{'"
        return False
    return fields == [("", "", None)]


def text_classifier(model, tokenizer, labels, templates=None, batch_size=64):
    """labels (K,) -> (K, E) unit rows: one text embedding per label (ensembled over templates).

    templates: None uses each label as its text; otherwise a list of strings with one "{}".
    """
    if isinstance(labels, str) or not labels or not all(isinstance(s, str) and s for s in labels):
        raise ValueError(f"labels must be a non-empty list of non-empty strings, got {labels!r}")
    if templates is not None:
        if isinstance(templates, str) or not templates:
            raise ValueError("templates must be a non-empty list of strings or None")
        bad = [t for t in templates if not is_template(t)]
        if bad:
            raise ValueError(f"each template must contain '{{}}' exactly once and no other "
                             f"braces (write {{{{ and }}}} for literal ones), got {bad}")
    forms = list(templates) if templates is not None else ["{}"]
    prompts = [[form.format(label) for form in forms] for label in labels]  # (K, F) texts
    return classifier_from_prompts(model, tokenizer, prompts, batch_size)


def classifier_from_prompts(model, tokenizer, prompts, batch_size=64):
    """prompts: K lists of F texts each (F prompts per class) -> (K, E) unit rows: for each class,
    the mean direction of its prompts' unit embeddings, back to unit length. The one zero-shot
    classifier of miniclip: the CLI, evaluation and the lessons all build theirs here."""
    n_forms = len(prompts[0])
    if any(len(p) != n_forms for p in prompts):
        raise ValueError("every class needs the same number of prompts")
    texts = [text for per_class in prompts for text in per_class]  # class-major, K * F
    tokens = tokenizer(texts, context_length=model.cfg.context_length)  # (K * F, T)
    feats = np.concatenate([model.encode_text(tokens[i:i + batch_size])
                            for i in range(0, len(texts), batch_size)])  # (K * F, E)
    feats = _unit_rows(feats).reshape(len(prompts), n_forms, -1)  # (K, F, E)
    return _unit_rows(feats.mean(axis=1))  # (K, E): mean direction, back to unit length


def zero_shot_probs(model, images, classifier, batch_size=16):
    """images (N, 3, R, R) normalised pixels, classifier (K, E) -> probs (N, K), rows sum to 1."""
    feats = np.concatenate([model.encode_image(images[i:i + batch_size])
                            for i in range(0, len(images), batch_size)])  # (N, E)
    logits = np.exp(model.params["logit_scale"]) * (_unit_rows(feats) @ classifier.T)  # (N, K)
    return np.exp(log_softmax(logits))


def read_templates(path):
    """One template per line (blank lines and lines starting with # skipped); each checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--template-file: no such file: {path}")
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as e:
        raise ValueError(f"--template-file {path} is not UTF-8 text ({e})") from e
    templates = [ln for ln in lines if ln and not ln.startswith("#")]
    if not templates:
        raise ValueError(f"--template-file {path} holds no template (one per line, each with {{}})")
    bad = [t for t in templates if not is_template(t)]
    if bad:
        raise ValueError(f"--template-file {path}: each template must contain '{{}}' exactly once "
                         f"and no other braces, got {bad[:3]}")
    return templates


def format_results(paths, labels, probs, top):
    """Text block: each image, then its top labels with probabilities, best first."""
    out = []
    for path, row in zip(paths, probs, strict=True):
        out.append(str(path))
        for k in np.argsort(-row, kind="stable")[:top]:
            out.append(f"  {row[k]:.4f}  {labels[k]}")
    return "\n".join(out)


def main(argv=None):
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``)."""
    from miniclip.cli import run_main

    return run_main(_main, argv)


def _main(argv=None):
    from miniclip.pretrained.loading import load
    from miniclip.pretrained.preprocess import open_image

    ap = argparse.ArgumentParser(prog="python -m miniclip.zeroshot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files")
    ap.add_argument("--weights", required=True,
                    help="anything miniclip.load takes: a run folder, an HF folder, "
                         ".safetensors or .npz")
    ap.add_argument("--labels", required=True, help='comma-separated, e.g. "a dog,a cat"')
    ap.add_argument("--templates", action="store_true",
                    help="ensemble over the built-in prompt templates (DEFAULT_TEMPLATES)")
    ap.add_argument("--template-file", default=None,
                    help="ensemble over your own templates: one per line, each with one {}")
    ap.add_argument("--top", type=int, default=None, help="print the K most likely labels")
    args = ap.parse_args(argv)

    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if not labels:
        ap.error("--labels is empty")
    top = len(labels) if args.top is None else args.top
    if top < 1:
        ap.error(f"--top must be >= 1, got {args.top}")
    templates = None
    if args.templates and args.template_file:
        ap.error("give --templates or --template-file, not both")
    if args.templates:
        templates = list(DEFAULT_TEMPLATES)
    elif args.template_file is not None:
        templates = read_templates(args.template_file)

    opened = [open_image(path) for path in args.images]  # every file checked before the model
    model, preprocess, tokenizer = load(args.weights)
    if tokenizer is None:
        raise ValueError(f"--weights {args.weights} does not use OpenAI's vocabulary and carries no "
                         "tokenizer; this command needs one to turn labels into tokens")
    try:
        classifier = text_classifier(model, tokenizer, labels, templates)
    except ValueError as e:
        raise ValueError(f"--labels: {e}") from e
    images = preprocess(opened)  # (N, 3, R, R) in the model's dtype
    print(format_results(args.images, labels, zero_shot_probs(model, images, classifier), top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
