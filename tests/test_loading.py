"""miniclip.loading: HF folders, safetensors and .npz files, config inference, errors that name keys.

No torch here: checkpoints are written with miniclip's own save_hf / save_weights or by hand.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.params import parameter_shapes
from miniclip.pretrained.hf import hf_config_dict, openai_to_hf, save_hf
from miniclip.pretrained.loading import (
    ACCEPTED,
    CONFIG_METADATA_KEY,
    infer_config,
    load,
    load_model,
    model_from_state_dict,
    save_weights,
)
from miniclip.pretrained.preprocess import Preprocess
from miniclip.pretrained.weights_io import write_npz, write_safetensors

# heads that width // 64 would not give, and exact GELU: only a config can say so
CFG = CLIPConfig(embed_dim=6, image_resolution=8, vision_layers=2, vision_width=12,
                 vision_patch_size=4, vision_heads=3, context_length=5, vocab_size=20,
                 transformer_width=8, transformer_heads=2, transformer_layers=1,
                 activation="gelu")
# widths where OpenAI's width // 64 rule gives the right heads (1 and 2)
PLAIN = CLIPConfig(embed_dim=8, image_resolution=4, vision_layers=1, vision_width=64,
                   vision_patch_size=2, context_length=4, vocab_size=10,
                   transformer_width=128, transformer_heads=2, transformer_layers=2)


@pytest.fixture(scope="module")
def model():
    return CLIP(CFG, seed=1)


def assert_same_weights(a, b):
    assert list(a.params) == list(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def shapes_only(cfg, dtype=np.float16):
    """A state dict of the right shapes that costs no memory (read-only broadcast views)."""
    return {k: np.broadcast_to(np.zeros((), dtype), s) for k, s in parameter_shapes(cfg).items()}


# ---- config inference -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"])
def test_infer_config_recovers_openai_models(name):
    assert infer_config(shapes_only(CONFIGS[name])) == CONFIGS[name]


def test_infer_config_needs_heads_when_they_are_not_width_over_64():
    state = shapes_only(CFG)
    guessed = infer_config(state)
    assert (guessed.vision_heads, guessed.transformer_heads) == (1, 1)  # width // 64, at least 1
    assert infer_config(state, 3, 2, "gelu") == CFG


def test_infer_config_errors():
    state = shapes_only(PLAIN)
    with pytest.raises(ValueError, match="'ln_final.weight'"):
        infer_config({k: v for k, v in state.items() if k != "ln_final.weight"})
    gap = {k: v for k, v in state.items() if not k.startswith("transformer.resblocks.0.")}
    with pytest.raises(ValueError, match=r"numbered 0..L-1, found \[1\]"):
        infer_config(gap)
    bad = dict(state, **{"visual.positional_embedding": np.zeros((6, 64))})
    with pytest.raises(ValueError, match="1 \\+ G\\^2"):
        infer_config(bad)
    with pytest.raises(ValueError, match="ResNet"):
        infer_config({"visual.layer1.0.conv1.weight": np.zeros(1)})


# ---- Hugging Face layout ------------------------------------------------------------------

def test_hf_folder_round_trip(tmp_path, model):
    save_hf(model, tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "hf")
    assert loaded.cfg == CFG and loaded.dtype == np.float32  # heads and GELU from config.json
    assert_same_weights(model, loaded)
    # the single file finds config.json beside it
    assert load_model(tmp_path / "hf" / "model.safetensors").cfg == CFG


def test_hf_without_config_json_uses_openai_rules(tmp_path):
    m = CLIP(PLAIN, seed=0)
    write_safetensors(openai_to_hf(m.params), tmp_path / "w.safetensors")
    loaded = load_model(tmp_path / "w.safetensors")
    assert loaded.cfg == PLAIN
    assert_same_weights(m, loaded)


def test_hf_sharded_checkpoint(tmp_path, model):
    hf = openai_to_hf(model.params)
    names = sorted(hf)
    shards = {"model-00001-of-00002.safetensors": names[:20],
              "model-00002-of-00002.safetensors": names[20:]}
    for shard, keys in shards.items():
        write_safetensors({k: hf[k] for k in keys}, tmp_path / shard)
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(hf_config_dict(CFG)))
    assert_same_weights(model, load_model(tmp_path))


def test_config_json_that_contradicts_the_weights(tmp_path, model):
    save_hf(model, tmp_path)
    config = hf_config_dict(CFG)
    config["vision_config"]["hidden_size"] = 24
    config["vision_config"]["intermediate_size"] = 96
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"disagree.*'vision_width': \(24, 12\)"):
        load_model(tmp_path)


def test_hf_missing_and_misshapen_keys_are_named_both_ways(tmp_path, model):
    hf = openai_to_hf(model.params)
    del hf["vision_model.post_layernorm.bias"]
    hf["text_model.encoder.layers.0.mlp.fc1.bias"] = np.zeros(5, np.float32)
    write_safetensors(hf, tmp_path / "w.safetensors")
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "w.safetensors", config=CFG)
    text = str(err.value)
    assert "missing: ['visual.ln_post.bias (HF: vision_model.post_layernorm.bias)']" in text
    assert ("transformer.resblocks.0.mlp.c_fc.bias (HF: text_model.encoder.layers.0.mlp.fc1.bias)"
            ": (5,), expected (32,)") in text


def test_eos_token_that_is_not_the_largest_id_warns(tmp_path, model):
    save_hf(model, tmp_path)
    config = hf_config_dict(CFG)
    config["text_config"]["eos_token_id"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="eos_token_id=7"):
        load_model(tmp_path)
    config["text_config"]["eos_token_id"] = 2  # HF's legacy value: pools at argmax, like miniclip
    (tmp_path / "config.json").write_text(json.dumps(config))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(tmp_path)


# ---- OpenAI layout ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_openai_layout_with_config_metadata(tmp_path, model, suffix):
    path = save_weights(model, tmp_path / f"w{suffix}")
    loaded = load_model(path)
    assert loaded.cfg == CFG  # heads and activation travel in the metadata
    assert_same_weights(model, loaded)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_openai_layout_without_metadata_infers_the_config(tmp_path, suffix):
    m = CLIP(PLAIN, seed=2)
    state = dict(m.params, input_resolution=np.array(4), context_length=np.array(4))  # as in .pt
    (write_safetensors if suffix == ".safetensors" else write_npz)(state, tmp_path / f"w{suffix}")
    loaded = load_model(tmp_path / f"w{suffix}")
    assert loaded.cfg == PLAIN
    assert_same_weights(m, loaded)


def test_float16_and_bfloat16_are_upcast_exactly(tmp_path, model):
    save_weights(model, tmp_path / "h.safetensors", dtype=np.float16)
    loaded = load_model(tmp_path / "h.safetensors")
    assert loaded.dtype == np.float32
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v.astype(np.float16).astype(np.float32))
    # bfloat16: write the top 16 bits of each float32 by hand, as a bf16 checkpoint stores them
    from .test_weights_io import write_by_hand

    bf = {k: (v.view(np.uint32) >> 16).astype("<u2") for k, v in model.params.items()}
    write_by_hand(tmp_path / "b.safetensors",
                  {k: ("BF16", v.shape, v.tobytes()) for k, v in bf.items()},
                  metadata={CONFIG_METADATA_KEY: json.dumps(CFG.to_dict())})
    loaded = load_model(tmp_path / "b.safetensors")
    for k, bits in bf.items():
        expected = (bits.astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(loaded.params[k], expected)
        assert np.abs(loaded.params[k] - model.params[k]).max() <= \
            np.abs(model.params[k]).max() * 2**-7  # bf16 keeps 8 significant bits


def test_dtype_follows_the_file_unless_asked(tmp_path):
    m64 = CLIP(PLAIN, seed=0, dtype=np.float64)
    save_weights(m64, tmp_path / "d.npz")
    assert load_model(tmp_path / "d.npz").dtype == np.float64  # never lowered silently
    m32 = load_model(tmp_path / "d.npz", dtype=np.float32)  # lowered because asked
    assert m32.dtype == np.float32
    np.testing.assert_array_equal(m32.params["visual.proj"], m64.params["visual.proj"].astype(np.float32))
    assert load_model(tmp_path / "d.npz", dtype=np.float16).dtype == np.float16  # asked for
    with pytest.raises(TypeError, match="dtype must be one of"):
        load_model(tmp_path / "d.npz", dtype=np.int8)


def test_the_loaded_model_computes_what_the_original_does(tmp_path, rng, model):
    save_hf(model, tmp_path)
    loaded = load_model(tmp_path)
    images = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    tokens = np.array([[18, 3, 19, 0, 0], [18, 19, 0, 0, 0]])
    np.testing.assert_array_equal(loaded(images, tokens)[0], model(images, tokens)[0])


def test_explicit_config_must_fit(tmp_path, model):
    save_weights(model, tmp_path / "w.npz")
    other = CLIPConfig(**{**CFG.to_dict(), "embed_dim": 7})
    with pytest.raises(ValueError, match=r"visual\.proj: \(12, 6\), expected \(12, 7\)"):
        load_model(tmp_path / "w.npz", config=other)
    with pytest.raises(TypeError, match="config must be a CLIPConfig"):
        load_model(tmp_path / "w.npz", config=CFG.to_dict())


def test_unexpected_and_non_float_tensors_are_named():
    state = {k: np.zeros(s, np.float32) for k, s in parameter_shapes(PLAIN).items()}
    with pytest.raises(ValueError, match=r"unexpected: \['visual.extra'\]"):
        model_from_state_dict(dict(state, **{"visual.extra": np.zeros(1)}), PLAIN)
    with pytest.raises(ValueError, match=r"not floating point: \['logit_scale'\]"):
        model_from_state_dict(dict(state, logit_scale=np.array(3)), PLAIN)


# ---- paths that are not checkpoints ---------------------------------------------------------

def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="neither model.safetensors"):
        load_model(tmp_path)
    (tmp_path / "ViT-B-32.pt").write_bytes(b"PK")
    with pytest.raises(ValueError, match="python -m miniclip.convert"):
        load_model(tmp_path / "ViT-B-32.pt")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="suffix '.h5'") as err:
        load_model(tmp_path / "w.h5")
    assert ACCEPTED in str(err.value)
    write_safetensors({"encoder.weight": np.zeros(2, np.float32)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"unknown layout.*encoder\.weight"):
        load_model(tmp_path / "x.safetensors")


def test_save_weights_wants_a_known_suffix(tmp_path, model):
    with pytest.raises(ValueError, match="'w.pt'"):
        save_weights(model, tmp_path / "w.pt")


# ---- load: model, preprocess, tokenizer ---------------------------------------------------

def test_load_returns_preprocess_and_tokenizer(tmp_path, model):
    cfg = CLIPConfig(**{**PLAIN.to_dict(), "vocab_size": 49408, "context_length": 77,
                        "transformer_width": 16, "transformer_heads": 2})
    save_hf(CLIP(cfg, seed=0), tmp_path / "openai_vocab")
    m, preprocess, tokenizer = load(tmp_path / "openai_vocab")
    assert isinstance(preprocess, Preprocess) and preprocess.resolution == cfg.image_resolution
    assert tokenizer.tokenize(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]
    save_hf(model, tmp_path / "toy_vocab")  # 20 ids: no tokenizer can be known
    _, _, tokenizer = load(tmp_path / "toy_vocab")
    assert tokenizer is None


def test_loading_modules_do_not_import_torch():
    code = ("import sys, miniclip.pretrained.loading, miniclip.pretrained.hf, "
            "miniclip.pretrained.convert, miniclip.pretrained.zeroshot, "
            "miniclip.pretrained.preprocess; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
