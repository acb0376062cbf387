"""benchmarks/shape_probe.py: the probe's hand-written gradient against finite differences, and
a probe that finds a shape that is in the embedding and cannot find one that is not."""

import sys
from pathlib import Path

import numpy as np
import pytest

from miniclip.nn.gradcheck import check_gradient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from shape_probe import fit_softmax_probe, main, probe_loss_and_grads  # noqa: E402


def test_probe_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((12, 5)), rng.integers(0, 4, 12)
    weights, bias = rng.standard_normal((5, 4)), rng.standard_normal(4)
    _, d_weights, d_bias = probe_loss_and_grads(x, labels, weights, bias, l2=0.1)
    loss_of = lambda _: probe_loss_and_grads(x, labels, weights, bias, l2=0.1)[0]  # noqa: E731
    assert check_gradient(loss_of, weights, np.array(1.0), d_weights) < 1e-7
    assert check_gradient(loss_of, bias, np.array(1.0), d_bias) < 1e-7


def test_probe_reads_a_shape_that_is_there_and_not_one_that_is_not():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((7, 16)) * 3  # one direction per shape
    labels = rng.integers(0, 7, 700)
    x = centres[labels] + rng.standard_normal((700, 16))
    weights, bias = fit_softmax_probe(x[:500], labels[:500], 7)
    assert np.mean((x[500:] @ weights + bias).argmax(1) == labels[500:]) > 0.95
    noise = rng.standard_normal((700, 16))  # the shape is not in these "embeddings"
    weights, bias = fit_softmax_probe(noise[:500], labels[:500], 7)
    assert np.mean((noise[500:] @ weights + bias).argmax(1) == labels[500:]) < 0.3


def test_too_few_training_images_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        main(["runs/none", "--train-images", "5"])
    assert "--train-images must be at least 100, got 5" in capsys.readouterr().err
