"""Evaluation metrics on hand-made similarity matrices whose answers are known, prompt
ensembling against its definition, and the evaluate CLI on a tiny trained run."""

import json

import numpy as np
import pytest

from miniclip.datasets import CLASSNAMES, PROMPT_TEMPLATES, generate_dataset, prompts_for
from miniclip.train.evaluate import (
    confusion_matrix,
    main,
    retrieval_metrics,
    retrieval_ranks,
    topk_accuracy,
    zero_shot_weights,
)
from miniclip.train.loop import TrainArgs, train


def test_topk_accuracy_on_a_known_matrix():
    scores = np.array([[0.9, 0.5, 0.1, 0.0],    # label 0: first
                       [0.9, 0.5, 0.1, 0.0],    # label 1: second
                       [0.9, 0.5, 0.1, 0.0],    # label 3: fourth
                       [0.2, 0.2, 0.9, 0.1]])   # label 1: tied with 0 for second -> third
    labels = np.array([0, 1, 3, 1])
    assert topk_accuracy(scores, labels, ks=(1, 2, 3, 4)) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}


def test_topk_accuracy_perfect_and_shape_errors():
    assert topk_accuracy(np.eye(5), np.arange(5), ks=(1,)) == {1: 1.0}
    with pytest.raises(ValueError, match=r"scores must be \(N, C\) and labels \(N,\)"):
        topk_accuracy(np.eye(5), np.arange(4))


def test_retrieval_ranks_and_metrics_on_a_known_matrix():
    # 12 queries; query i's right answer ranks i + 1 (1, 2, ..., 12)
    N = 12
    sim = np.zeros((N, N))
    for i in range(N):
        sim[i, i] = 0.5
        others = [j for j in range(N) if j != i]
        sim[i, others[:i]] = 0.9  # i candidates beat the right one
    ranks = retrieval_ranks(sim)
    np.testing.assert_array_equal(ranks, np.arange(1, N + 1))
    m = retrieval_metrics(sim, "i2t")
    assert m["i2t_r1"] == pytest.approx(1 / 12)
    assert m["i2t_r5"] == pytest.approx(5 / 12)
    assert m["i2t_r10"] == pytest.approx(10 / 12)
    assert m["i2t_mean_rank"] == pytest.approx(6.5)
    assert m["i2t_median_rank"] == pytest.approx(6.5)


def test_retrieval_of_the_transpose_is_the_other_direction():
    sim = np.array([[1.0, 0.9], [0.95, 0.1]])
    # image->text: image 0 finds text 0 first; image 1 finds text 0 (0.95) before text 1 (0.1)
    np.testing.assert_array_equal(retrieval_ranks(sim), [1, 2])
    # text->image: text 0 finds image 0 (1.0) first; text 1 finds image 0 (0.9) before image 1
    np.testing.assert_array_equal(retrieval_ranks(sim.T), [1, 2])


def test_ties_count_against_the_model():
    assert retrieval_ranks(np.ones((3, 3))).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="square"):
        retrieval_ranks(np.ones((2, 3)))


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    assert cm.sum() == 6


class FakeModel:
    """encode_text gives each text (its first token id) a fixed vector of varying length, so
    the ensemble can be recomputed by hand."""

    class cfg:
        context_length = 8

    def encode_text(self, tokens):
        return np.stack([np.random.default_rng(int(t[0])).standard_normal(4) * (1 + t[0] % 3)
                         for t in tokens])


class FakeTokenizer:
    """miniclip's tokenizer interface: tokenizer(list_of_str, context_length) -> ids."""

    def __call__(self, texts, context_length):
        return np.array([[sum(map(ord, t)) % 10_000] + [0] * (context_length - 1) for t in texts])


def test_prompt_ensemble_is_the_renormalised_mean_of_unit_prompt_embeddings():
    model, tok = FakeModel(), FakeTokenizer()
    names = ["red circle", "orange star"]
    w = zero_shot_weights(model, tok, names)
    assert w.shape == (2, 4)
    for c, name in enumerate(names):
        prompts = prompts_for(name)
        assert len(prompts) == len(PROMPT_TEMPLATES)
        emb = model.encode_text(tok(prompts, 8))
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        mean = unit.mean(axis=0)
        np.testing.assert_allclose(w[c], mean / np.linalg.norm(mean), rtol=1e-12)
    assert "an orange star." in prompts_for("orange star")


def test_evaluate_cli_on_a_tiny_run(tmp_path, capsys):
    data = tmp_path / "data"
    generate_dataset(data, n_train=64, n_val=16, n_test=48, n_heldout=16, workers=1,
                     progress=False)
    run = tmp_path / "run"
    train(TrainArgs(data=str(data), out=str(run), model="toy-tiny", steps=2, batch_size=16,
                    warmup=1, eval_every=0), progress=False, final_eval=False, log=lambda *a: None)
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "zero-shot top-1: seen" in out and "retrieval on 48 test pairs" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["zeroshot_n_seen"] == 48
    assert metrics["zeroshot_n_heldout"] == 16 and len(CLASSNAMES) == 56
    for key in ("zeroshot_top1_seen", "zeroshot_top5_heldout", "retrieval_i2t_r10",
                "retrieval_t2i_median_rank", "train_seconds"):
        assert key in metrics
    assert metrics["zeroshot_top5_seen"] >= metrics["zeroshot_top1_seen"]
    for key, chance in (("binding_acc", 0.5), ("relation_acc", 0.5),
                        ("renderer_shift_top1_seen", 1 / 56),
                        ("renderer_shift_top1_heldout", 1 / 56)):
        assert 0.0 <= metrics[key] <= 1.0 and metrics[f"{key}_chance"] == pytest.approx(chance)
    assert metrics["renderer_shift_n_seen"] == 480 and metrics["binding_n"] == 500
    assert "binding" in out and "renderer shift" in out
    assert (run / "confusion.png").stat().st_size > 1000
    assert (run / "similarity.png").stat().st_size > 1000
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no checkpoint or run folder" in capsys.readouterr().err
