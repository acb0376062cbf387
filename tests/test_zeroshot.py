"""Zero-shot classification and its command line, on a tiny random HF-layout checkpoint."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.pretrained.hf import save_hf
from miniclip.pretrained.loading import load
from miniclip.pretrained.zeroshot import (
    DEFAULT_TEMPLATES,
    format_results,
    main,
    read_templates,
    text_classifier,
    zero_shot_probs,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # OpenAI's vocabulary and context, everything else tiny
    cfg = CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=24,
                     vision_patch_size=8, vision_heads=2, context_length=77, vocab_size=49408,
                     transformer_width=16, transformer_heads=2, transformer_layers=1)
    root = tmp_path_factory.mktemp("zeroshot")
    save_hf(CLIP(cfg, seed=0), root / "clip")
    colours = {"red.png": (220, 20, 30), "blue.jpg": (20, 40, 230)}
    for name, colour in colours.items():
        image = np.zeros((20, 30, 3), np.uint8)
        image[:] = colour
        image[5:15, 10:20] = 255 - np.array(colour)  # a square of the opposite colour
        Image.fromarray(image).save(root / name)
    return root


LABELS = ["a red square", "a blue square", "a diagram"]


def test_probabilities_are_the_softmax_of_clips_logits(checkpoint):
    model, preprocess, tokenizer = load(checkpoint / "clip")
    images = preprocess([checkpoint / "red.png", checkpoint / "blue.jpg"])
    probs = zero_shot_probs(model, images, text_classifier(model, tokenizer, LABELS))
    logits_per_image, _ = model(images, tokenizer(LABELS))
    expected = np.exp(logits_per_image - logits_per_image.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)


def test_templates_are_ensembled_by_mean_of_unit_embeddings(checkpoint):
    model, _, tokenizer = load(checkpoint / "clip")
    templates = ["a photo of {}.", "{} drawn in crayon"]
    rows = text_classifier(model, tokenizer, LABELS, templates)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, rtol=1e-6)
    for k, label in enumerate(LABELS):
        feats = model.encode_text(tokenizer([t.format(label) for t in templates]))
        feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        mean = feats.mean(0)
        np.testing.assert_allclose(rows[k], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    # a single template "{}" is the same as no template at all
    np.testing.assert_allclose(text_classifier(model, tokenizer, LABELS, ["{}"]),
                               text_classifier(model, tokenizer, LABELS), rtol=0, atol=0)


def test_bad_labels_and_templates(checkpoint):
    model, _, tokenizer = load(checkpoint / "clip")
    with pytest.raises(ValueError, match="labels must be a non-empty list"):
        text_classifier(model, tokenizer, "a dog")
    with pytest.raises(ValueError, match="labels must be a non-empty list"):
        text_classifier(model, tokenizer, ["a dog", ""])
    with pytest.raises(ValueError, match=r"exactly once and no other braces .*, got \['a photo'\]"):
        text_classifier(model, tokenizer, LABELS, ["a photo", "{}"])
    with pytest.raises(ValueError, match="templates must be a non-empty list"):
        text_classifier(model, tokenizer, LABELS, [])


def parse(output):
    """'path' lines followed by '  prob  label' lines -> {path: {label: prob}}."""
    result, current = {}, None
    for line in output.strip().splitlines():
        if line.startswith("  "):
            prob, label = line.strip().split("  ", 1)
            result[current][label] = float(prob)
        else:
            current = line
            result[current] = {}
    return result


def test_command_line(checkpoint, capsys):
    images = [str(checkpoint / "red.png"), str(checkpoint / "blue.jpg")]
    main(["--weights", str(checkpoint / "clip"), *images, "--labels", ",".join(LABELS)])
    printed = parse(capsys.readouterr().out)
    model, preprocess, tokenizer = load(checkpoint / "clip")
    probs = zero_shot_probs(model, preprocess(images),
                            text_classifier(model, tokenizer, LABELS))
    assert list(printed) == images
    for row, image in zip(probs, images, strict=True):
        assert list(printed[image].values()) == sorted(printed[image].values(), reverse=True)
        for k, label in enumerate(LABELS):
            assert printed[image][label] == pytest.approx(row[k], abs=5e-5)  # printed to 4 places

    main(["--weights", str(checkpoint / "clip"), images[0], "--labels", ",".join(LABELS),
          "--templates", "--top", "2"])
    printed = parse(capsys.readouterr().out)
    classifier = text_classifier(model, tokenizer, LABELS, list(DEFAULT_TEMPLATES))
    row = zero_shot_probs(model, preprocess(images[:1]), classifier)[0]
    best = [LABELS[k] for k in np.argsort(-row)[:2]]
    assert list(printed[images[0]]) == best


def test_template_file(checkpoint, capsys, tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# my templates\na photo of {}.\n\n{} drawn in crayon\n")
    assert read_templates(path) == ["a photo of {}.", "{} drawn in crayon"]
    image = str(checkpoint / "red.png")
    main(["--weights", str(checkpoint / "clip"), image, "--labels", "a dog, a cat",
          "--template-file", str(path)])
    printed = parse(capsys.readouterr().out)[image]
    assert sorted(printed) == ["a cat", "a dog"]  # labels are stripped of spaces
    assert sum(printed.values()) == pytest.approx(1, abs=1e-3)


def test_command_line_errors(checkpoint, capsys):
    weights = str(checkpoint / "clip")
    image = str(checkpoint / "red.png")
    for extra, message in [(["--labels", " , "], "--labels is empty"),
                           (["--labels", "a,b", "--top", "0"], "--top must be >= 1"),
                           (["--labels", "a,b", "--templates", "--template-file", "t.txt"],
                            "not both")]:
        with pytest.raises(SystemExit):
            main(["--weights", weights, image, *extra])
        assert message in capsys.readouterr().err


def test_format_results():
    text = format_results(["x.png"], ["a", "b", "c"], np.array([[0.2, 0.5, 0.3]]), top=2)
    assert text == "x.png\n  0.5000  b\n  0.3000  c"


def test_runs_as_a_module(checkpoint):
    """The real command, in its own process (python -m miniclip.zeroshot)."""
    out = subprocess.run([sys.executable, "-m", "miniclip.zeroshot", "--weights",
                          str(checkpoint / "clip"), str(checkpoint / "blue.jpg"),
                          "--labels", "a dog,a cat", "--top", "1"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].endswith("blue.jpg") and len(lines) == 2
    assert lines[1].split("  ")[-1] in ("a dog", "a cat")
