"""load(name) through the Hugging Face Hub's cache, offline, with a cache folder made here."""

import numpy as np
import pytest

import miniclip
from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.pretrained.hf import save_hf
from miniclip.pretrained.hub import OPENAI_NAMES, available_models, is_model_name

pytest.importorskip("huggingface_hub", reason="the [hub] extra (in [test]) installs it")

REVISION = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache, repo_id, model):
    """The hub's cache layout: models--ORG--NAME/{refs/main, snapshots/REVISION/<files>}."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    save_hf(model, folder / "snapshots" / REVISION)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def small_openai_vocab_model():
    cfg = CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=24,
                     vision_patch_size=8, vision_heads=2, context_length=77, vocab_size=49408,
                     transformer_width=16, transformer_heads=2, transformer_layers=1)
    return CLIP(cfg, seed=3)


def test_names_resolve_through_a_prefilled_cache(offline_cache):
    """Regression (issue 12): miniclip.load("ViT-B/32") raised FileNotFoundError."""
    model = small_openai_vocab_model()
    fill_cache(offline_cache, "openai/clip-vit-base-patch32", model)
    for name in ("ViT-B/32", "openai/clip-vit-base-patch32"):
        loaded, preprocess, tokenizer = miniclip.load(name)
        np.testing.assert_array_equal(loaded.params["visual.proj"], model.params["visual.proj"])
        assert preprocess.resolution == 16
        assert tokenizer(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]


def test_missing_from_the_cache_offline_names_the_folder_to_fill(offline_cache):
    with pytest.raises(FileNotFoundError) as info:
        miniclip.load("ViT-L/14")
    message = str(info.value)
    assert "HF_HUB_OFFLINE is set" in message
    assert str(offline_cache / "models--openai--clip-vit-large-patch14") in message
    assert "huggingface-cli download openai/clip-vit-large-patch14" in message


def test_available_models_and_what_counts_as_a_name(tmp_path):
    names = available_models()
    assert names[:4] == ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    assert set(OPENAI_NAMES.values()) <= set(names)
    assert miniclip.available_models() == names
    assert is_model_name("openai/clip-vit-base-patch32") and is_model_name("ViT-B/16")
    (tmp_path / "run").mkdir()
    assert not is_model_name(str(tmp_path / "run"))  # an existing folder is a path
    assert not is_model_name("weights.safetensors") and not is_model_name("a/b/c")
