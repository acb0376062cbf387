"""Parameter counts, layer by layer, against the numbers OpenAI's checkpoints have."""

import pytest

from miniclip import CONFIGS, CLIPConfig, count_parameters, parameter_breakdown


def test_vit_l14_layer_by_layer():
    bd = parameter_breakdown(CONFIGS["ViT-L/14"])
    v, t = bd["vision"], bd["text"]
    assert v["patch embedding (conv1, no bias)"] == 602_112
    assert v["class token"] == 1_024
    assert v["positional embedding"] == 263_168 == 257 * 1024
    assert v["ln_pre"] == 2_048
    blocks = [n for k, n in v.items() if k.startswith("block")]
    assert len(blocks) == 24 and set(blocks) == {12_596_224}
    assert sum(blocks) == 302_309_376
    assert v["ln_post"] == 2_048
    assert v["projection"] == 786_432
    assert sum(v.values()) == 303_966_208
    assert t["token embedding"] == 37_945_344
    assert t["positional embedding"] == 59_136
    tblocks = [n for k, n in t.items() if k.startswith("block")]
    assert len(tblocks) == 12 and set(tblocks) == {7_087_872}
    assert sum(tblocks) == 85_054_464
    assert t["ln_final"] == 1_536
    assert t["projection"] == 589_824
    assert sum(t.values()) == 123_650_304
    assert bd["other"] == {"logit_scale": 1}
    assert sum(count_parameters(CONFIGS["ViT-L/14"]).values()) == 427_616_513


def test_often_quoted_breakdown_is_off_by_conv_bias_and_ln_pre():
    counts = count_parameters(CONFIGS["ViT-L/14"])
    assert "visual.conv1.bias" not in counts
    quoted_vision, quoted_total = 303_965_184, 427_615_489
    ours_vision = sum(n for k, n in counts.items() if k.startswith("visual."))
    ln_pre = counts["visual.ln_pre.weight"] + counts["visual.ln_pre.bias"]
    assert ours_vision - quoted_vision == ln_pre - 1024 == 1024
    assert sum(counts.values()) - quoted_total == 1024


@pytest.mark.parametrize(
    "name,total",
    [("ViT-B/32", 151_277_313), ("ViT-B/16", 149_620_737), ("ViT-L/14@336px", 427_944_193),
     ("ViT-L/14", 427_616_513)],
)
def test_released_totals(name, total):
    assert sum(count_parameters(CONFIGS[name]).values()) == total


def test_heads_default_to_width_over_64():
    assert CONFIGS["ViT-L/14"].vision_heads == 16
    assert CONFIGS["ViT-B/32"].vision_heads == 12


@pytest.mark.parametrize(
    "field,value",
    [("vision_width", 0), ("image_resolution", 30), ("transformer_heads", 3), ("activation", "relu"),
     ("vocab_size", 2.5)],
)
def test_bad_config_names_the_field(field, value):
    kwargs = CONFIGS["tiny"].to_dict() | {field: value}
    with pytest.raises(ValueError, match=field.split("_")[0]):
        CLIPConfig(**kwargs)
