"""One API for every model (issue 12): whatever ``miniclip.load`` loaded (a run folder of
``python -m miniclip.train``, an HF folder), ``preprocess`` and ``tokenizer`` follow one
convention, and ``python -m miniclip.zeroshot`` works with it."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import miniclip
from miniclip.datasets import generate_dataset
from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.pretrained.convert import main as convert_main
from miniclip.pretrained.hf import save_hf
from miniclip.pretrained.zeroshot import main as zeroshot_main
from miniclip.text.bpe import BPETokenizer
from miniclip.text.tokenizer import ModelTokenizer, SimpleTokenizer
from miniclip.train.loop import TrainArgs, train


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{kind: path}: a freshly trained run folder (toy-tiny, 3 steps) and an HF folder with
    OpenAI's vocabulary; plus two pictures."""
    root = tmp_path_factory.mktemp("one_api")
    generate_dataset(root / "data", n_train=48, n_val=16, n_test=16, n_heldout=8, workers=1,
                     progress=False)
    train(TrainArgs(data=str(root / "data"), out=str(root / "run"), model="toy-tiny", steps=3,
                    batch_size=16, warmup=1, eval_every=0, checkpoint_every=3, log_every=1),
          progress=False, final_eval=False, log=quiet)
    cfg = CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=24,
                     vision_patch_size=8, vision_heads=2, context_length=77, vocab_size=49408,
                     transformer_width=16, transformer_heads=2, transformer_layers=1)
    save_hf(CLIP(cfg, seed=0), root / "hf")
    assert convert_main([str(root / "run"), str(root / "exported"), "--hf"]) == 0
    for name, colour in {"red.png": (220, 20, 30), "blue.jpg": (20, 40, 230)}.items():
        image = np.zeros((40, 50, 3), np.uint8)
        image[:] = colour
        Image.fromarray(image).save(root / name)
    return {"run": root / "run", "hf": root / "hf", "exported": root / "exported", "root": root}


@pytest.mark.parametrize("kind", ["run", "hf", "exported"])
def test_load_gives_one_convention(models, kind):
    model, preprocess, tokenizer = miniclip.load(models[kind])
    R = model.cfg.image_resolution
    paths = [models["root"] / "red.png", models["root"] / "blue.jpg"]
    pil = [Image.open(p).convert("RGB") for p in paths]
    one = preprocess(pil[0])
    assert one.shape == (1, 3, R, R) and one.dtype == model.dtype
    batch = preprocess(paths)
    assert batch.shape == (2, 3, R, R)
    np.testing.assert_array_equal(batch[:1], one)
    np.testing.assert_array_equal(preprocess(pil), batch)
    np.testing.assert_array_equal(preprocess([np.asarray(im) for im in pil]), batch)
    np.testing.assert_array_equal(preprocess(np.stack([np.asarray(im) for im in pil])), batch)

    assert callable(tokenizer) and isinstance(tokenizer, BPETokenizer)
    tokens = tokenizer(["a red circle.", "a blue square."])
    assert tokens.shape == (2, model.cfg.context_length) and tokens.dtype == np.int64
    assert model.encode_image(batch).shape == model.encode_text(tokens).shape == (
        2, model.cfg.embed_dim)
    logits_per_image, logits_per_text = model(batch, tokens)
    np.testing.assert_allclose(logits_per_image, logits_per_text.T)

    wide, pre64, _ = miniclip.load(models[kind], dtype=np.float64)
    assert wide.dtype == np.float64 and pre64(paths).dtype == np.float64


def test_every_tokenizer_is_callable_the_same_way():
    openai = SimpleTokenizer()
    np.testing.assert_array_equal(openai(["a cat"]), openai.tokenize(["a cat"], 77))
    assert openai(["a cat"], context_length=5).shape == (1, 5)
    trained = ModelTokenizer(BPETokenizer.train(["a cat", "a dog"], 518).merges, 9)
    assert trained(["a cat"]).shape == (1, 9)
    assert BPETokenizer([])(["a"]).shape == (1, 77)


@pytest.mark.parametrize("kind", ["run", "hf", "exported"])
def test_zeroshot_cli_works_with_every_kind(models, kind, capsys):
    """Regression (issue 12): on a run folder it raised AttributeError: 'ToyPreprocess' object
    has no attribute 'batch'."""
    images = [str(models["root"] / "red.png"), str(models["root"] / "blue.jpg")]
    assert zeroshot_main(["--weights", str(models[kind]), *images,
                          "--labels", "a red circle,a blue square", "--templates"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == images[0] and out[3] == images[1] and len(out) == 6
    for line in out[1:3] + out[4:6]:
        prob, label = line.split()[0], " ".join(line.split()[1:])
        assert 0 <= float(prob) <= 1 and label in ("a red circle", "a blue square")


def test_zeroshot_cli_on_a_run_folder_as_a_module(models):
    proc = subprocess.run([sys.executable, "-m", "miniclip.zeroshot", "--weights",
                           str(models["run"]), str(models["root"] / "red.png"),
                           "--labels", "a red circle,a blue star", "--top", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2


def test_zeroshot_cli_errors_are_one_line(models, tmp_path, capsys):
    cfg = CLIPConfig(embed_dim=8, image_resolution=16, vision_layers=1, vision_width=16,
                     vision_patch_size=8, vision_heads=1, context_length=8, vocab_size=600,
                     transformer_width=16, transformer_heads=1, transformer_layers=1)
    save_hf(CLIP(cfg, seed=0), tmp_path / "other_vocab")
    image = str(models["root"] / "red.png")
    assert zeroshot_main(["--weights", str(tmp_path / "other_vocab"), image,
                          "--labels", "a,b"]) == 2
    assert "carries no tokenizer" in capsys.readouterr().err
    assert zeroshot_main(["--weights", str(tmp_path / "nothing"), image, "--labels", "a,b"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert zeroshot_main(["--weights", str(models["run"]), str(tmp_path / "missing.png"),
                          "--labels", "a,b"]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_a_run_exported_to_hf_is_the_same_model(models):
    """python -m miniclip.convert RUN OUT --hf: the same embeddings from the same images and
    texts, through each folder's own preprocess and tokenizer."""
    run, pre_run, tok_run = miniclip.load(models["run"])
    hf, pre_hf, tok_hf = miniclip.load(models["exported"])
    images = [models["root"] / "red.png", np.full((32, 32, 3), 90, np.uint8)]
    np.testing.assert_array_equal(pre_run(images), pre_hf(images))
    texts = ["a red circle.", "two blue squares in the top left"]
    np.testing.assert_array_equal(tok_run(texts), tok_hf(texts))
    np.testing.assert_allclose(hf.encode_image(pre_hf(images)), run.encode_image(pre_run(images)),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hf.encode_text(tok_hf(texts)), run.encode_text(tok_run(texts)),
                               rtol=1e-6, atol=1e-7)


def test_transformers_reads_an_exported_run(models):
    """Parity: transformers.CLIPModel.from_pretrained and CLIPTokenizer on the exported folder
    give miniclip's embeddings and ids (needs torch + transformers: the [reference] extra)."""
    torch = pytest.importorskip("torch", reason="the parity reference needs torch")
    transformers = pytest.importorskip("transformers", reason="the reference needs transformers")
    model, preprocess, tokenizer = miniclip.load(models["run"])
    theirs = transformers.CLIPModel.from_pretrained(models["exported"]).eval()
    x = preprocess([models["root"] / "red.png", models["root"] / "blue.jpg"])
    texts = ["a red circle.", "a big blue star at the bottom"]
    ids = tokenizer(texts)
    their_tok = transformers.CLIPTokenizer.from_pretrained(models["exported"])
    their_ids = their_tok(texts, padding="max_length", max_length=model.cfg.context_length)
    np.testing.assert_array_equal(np.where(ids > 0, ids, 0),
                                  np.where(np.array(their_ids["attention_mask"]) > 0,
                                           np.array(their_ids["input_ids"]), 0))
    with torch.no_grad():
        img = theirs.get_image_features(pixel_values=torch.from_numpy(x))
        txt = theirs.get_text_features(input_ids=torch.from_numpy(ids))
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    np.testing.assert_allclose(img.numpy(), model.encode_image(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(txt.numpy(), model.encode_text(ids), rtol=1e-4, atol=1e-5)
