"""The key mapping between Hugging Face's CLIP layout and OpenAI's, and HF's config.json."""

import numpy as np
import pytest

from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.model.params import parameter_shapes
from miniclip.pretrained.hf import (
    config_fields_from_hf,
    hf_config_dict,
    hf_key,
    hf_to_openai,
    is_hf_layout,
    openai_to_hf,
)

CFG = CLIPConfig(embed_dim=6, image_resolution=8, vision_layers=2, vision_width=12,
                 vision_patch_size=4, vision_heads=3, context_length=5, vocab_size=20,
                 transformer_width=8, transformer_heads=2, transformer_layers=1)


@pytest.fixture(scope="module")
def model():
    return CLIP(CFG, seed=3, dtype=np.float64)


def test_round_trip_is_exact_and_complete(model):
    hf = openai_to_hf(model.params)
    # 14 top-level tensors; a block is 12 OpenAI tensors, 16 HF ones (q, k, v split out)
    n_blocks = CFG.vision_layers + CFG.transformer_layers
    assert len(model.params) == 14 + 12 * n_blocks and len(hf) == 14 + 16 * n_blocks
    back = hf_to_openai(hf)
    assert list(sorted(back)) == sorted(parameter_shapes(CFG))
    for k, v in model.params.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_the_mapping_itself(model):
    p, hf = model.params, openai_to_hf(model.params)
    W = CFG.vision_width
    w_in = p["visual.transformer.resblocks.1.attn.in_proj_weight"]  # (3W, W), rows q, k, v
    b_in = p["visual.transformer.resblocks.1.attn.in_proj_bias"]
    for i, name in enumerate("qkv"):
        np.testing.assert_array_equal(
            hf[f"vision_model.encoder.layers.1.self_attn.{name}_proj.weight"], w_in[i * W:(i + 1) * W])
        np.testing.assert_array_equal(
            hf[f"vision_model.encoder.layers.1.self_attn.{name}_proj.bias"], b_in[i * W:(i + 1) * W])
    # projections: OpenAI's x @ proj is HF's Linear x @ weight.T, so weight = proj.T
    np.testing.assert_array_equal(hf["visual_projection.weight"], p["visual.proj"].T)
    np.testing.assert_array_equal(hf["text_projection.weight"], p["text_projection"].T)
    x = np.ones((1, W))
    np.testing.assert_allclose(x @ p["visual.proj"], x @ hf["visual_projection.weight"].T)
    same = {"vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
            "vision_model.post_layernorm.bias": "visual.ln_post.bias",
            "text_model.final_layer_norm.weight": "ln_final.weight",
            "text_model.encoder.layers.0.mlp.fc1.weight": "transformer.resblocks.0.mlp.c_fc.weight",
            "text_model.encoder.layers.0.mlp.fc2.bias": "transformer.resblocks.0.mlp.c_proj.bias",
            "text_model.encoder.layers.0.layer_norm2.weight": "transformer.resblocks.0.ln_2.weight",
            "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
            "text_model.embeddings.position_embedding.weight": "positional_embedding",
            "logit_scale": "logit_scale"}
    for hf_name, openai_name in same.items():
        np.testing.assert_array_equal(hf[hf_name], p[openai_name], err_msg=hf_name)


def test_hf_key_names():
    assert hf_key("visual.ln_pre.bias") == "vision_model.pre_layrnorm.bias"
    assert hf_key("transformer.resblocks.4.attn.out_proj.bias") == \
        "text_model.encoder.layers.4.self_attn.out_proj.bias"
    assert hf_key("visual.transformer.resblocks.0.attn.in_proj_weight") == \
        "vision_model.encoder.layers.0.self_attn.{q,k,v}_proj.weight"
    with pytest.raises(KeyError, match="visual.layer1"):
        hf_key("visual.layer1.0.conv1.weight")


def test_layout_detection(model):
    assert is_hf_layout(openai_to_hf(model.params))
    assert not is_hf_layout(model.params)


def test_position_ids_are_skipped_and_unknown_keys_named(model):
    hf = openai_to_hf(model.params)
    hf["text_model.embeddings.position_ids"] = np.arange(CFG.context_length)[None]
    assert "position_ids" not in "".join(hf_to_openai(hf))
    hf["vision_model.encoder.layers.0.adapter.weight"] = np.zeros(3)
    hf["some_head.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"adapter\.weight.*some_head\.bias|some_head.*adapter"):
        hf_to_openai(hf)


def test_incomplete_or_mismatched_qkv_is_named(model):
    hf = openai_to_hf(model.params)
    del hf["text_model.encoder.layers.0.self_attn.k_proj.bias"]
    with pytest.raises(ValueError, match=r"text_model\.encoder\.layers\.0\.self_attn\.k_proj\.bias"):
        hf_to_openai(hf)
    hf = openai_to_hf(model.params)
    hf["vision_model.encoder.layers.1.self_attn.v_proj.weight"] = np.zeros((12, 13))
    with pytest.raises(ValueError, match=r"layers\.1\.self_attn q/k/v .* equal shapes"):
        hf_to_openai(hf)


def test_openai_to_hf_rejects_foreign_keys():
    with pytest.raises(ValueError, match="visual.attnpool"):
        openai_to_hf({"visual.attnpool.c_proj.weight": np.zeros(2)})
    with pytest.raises(ValueError, match="resblocks.0.extra"):
        openai_to_hf({"transformer.resblocks.0.extra": np.zeros(2)})


@pytest.mark.parametrize("cfg", [CFG, CONFIGS["ViT-B/32"], CONFIGS["ViT-L/14@336px"],
                                 CLIPConfig(**{**CFG.to_dict(), "activation": "gelu"})])
def test_config_json_round_trip(cfg):
    fields = config_fields_from_hf(hf_config_dict(cfg))
    assert CLIPConfig(**fields) == cfg


def test_config_fields_from_an_old_style_config():
    """Configs written by old transformers versions keep tower settings in *_config_dict."""
    fields = config_fields_from_hf({"projection_dim": 512,
                                    "text_config_dict": {"hidden_size": 512, "hidden_act": "quick_gelu"},
                                    "vision_config_dict": {"patch_size": 32}})
    assert fields == {"embed_dim": 512, "vision_patch_size": 32, "transformer_width": 512,
                      "activation": "quick_gelu"}


@pytest.mark.parametrize("change, message", [
    ({"text_config": {"hidden_act": "relu"}}, "text_config.hidden_act is 'relu'"),
    ({"text_config": {"hidden_act": "gelu"}, "vision_config": {"hidden_act": "quick_gelu"}},
     "different activations"),
    ({"vision_config": {"hidden_act": "gelu", "layer_norm_eps": 1e-6}}, "layer_norm_eps is 1e-06"),
    ({"vision_config": {"hidden_act": "gelu", "hidden_size": 8, "intermediate_size": 16}},
     "intermediate_size is 16"),
])
def test_unsupported_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        config_fields_from_hf(change)
    with pytest.raises(TypeError, match="hf_config must be a dict"):
        config_fields_from_hf("config.json")


def test_written_config_pools_where_miniclip_does():
    text = hf_config_dict(CFG)["text_config"]
    assert text["eos_token_id"] == CFG.vocab_size - 1  # the largest id: HF and argmax agree
