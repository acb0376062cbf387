"""python -m miniclip.convert: OpenAI .pt files (pickled state dicts and TorchScript) -> safetensors.

The checkpoints are fakes with OpenAI's key names and shapes, made from a random miniclip model:
OpenAI's real files are hundreds of megabytes and need the network.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="converting .pt files needs PyTorch (optional: "
                            "pip install torch); the rest of miniclip does not")

from miniclip.model.clip import CLIP  # noqa: E402
from miniclip.model.config import CLIPConfig  # noqa: E402
from miniclip.pretrained.convert import convert, main, read_torch_state_dict  # noqa: E402
from miniclip.pretrained.loading import load_model  # noqa: E402

# widths 64 and 128: heads by OpenAI's rule (width // 64), as in OpenAI's released models
CFG = CLIPConfig(embed_dim=8, image_resolution=4, vision_layers=1, vision_width=64,
                 vision_patch_size=2, context_length=4, vocab_size=10,
                 transformer_width=128, transformer_heads=2, transformer_layers=2)


@pytest.fixture(scope="module")
def model():
    return CLIP(CFG, seed=0)


def openai_state_dict(model, dtype=torch.float16):
    """What OpenAI's checkpoints hold: fp16 tensors plus three integers."""
    sd = {k: torch.from_numpy(v.copy()).to(dtype) for k, v in model.params.items()}
    sd.update(input_resolution=torch.tensor(CFG.image_resolution),
              context_length=torch.tensor(CFG.context_length),
              vocab_size=torch.tensor(CFG.vocab_size))
    return sd


def assert_loads_as_fp16_of(path, model):
    loaded = load_model(path)
    assert loaded.cfg == CFG and loaded.dtype == np.float32
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v.astype(np.float16).astype(np.float32))


def test_pickled_state_dict(tmp_path, model):
    torch.save(openai_state_dict(model), tmp_path / "ViT-tiny.pt")
    cfg = convert(tmp_path / "ViT-tiny.pt", tmp_path / "out.safetensors")
    assert cfg == CFG
    assert_loads_as_fp16_of(tmp_path / "out.safetensors", model)
    from miniclip.pretrained.weights_io import read_safetensors

    tensors, metadata = read_safetensors(tmp_path / "out.safetensors")
    assert tensors["visual.proj"].dtype == np.float16  # stored as given: half the bytes
    assert "input_resolution" not in tensors and "miniclip_config" in metadata


def _module_tree(state):
    """An nn.Module whose state_dict has exactly these names (nested submodules by dots)."""
    root = torch.nn.Module()
    for name, tensor in state.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        if tensor.is_floating_point():
            module.register_parameter(leaf, torch.nn.Parameter(tensor, requires_grad=False))
        else:
            module.register_buffer(leaf, tensor)
    return root


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script, still supported
def test_torchscript_archive(tmp_path, model):
    """OpenAI's released files are TorchScript archives: read with torch.jit.load."""
    tree = _module_tree(openai_state_dict(model))
    scripted = torch.jit.script(tree)
    scripted.save(str(tmp_path / "ViT-tiny.pt"))
    main([str(tmp_path / "ViT-tiny.pt"), str(tmp_path / "out.npz")])
    assert_loads_as_fp16_of(tmp_path / "out.npz", model)


def test_wrapped_and_prefixed_checkpoint_in_float32(tmp_path, model):
    sd = {"module." + k: v for k, v in openai_state_dict(model, torch.float32).items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "train.pt")
    convert(tmp_path / "train.pt", tmp_path / "out.safetensors")
    loaded = load_model(tmp_path / "out.safetensors")
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)


def test_bfloat16_is_widened_and_dtype_can_be_chosen(tmp_path, model):
    torch.save(openai_state_dict(model, torch.bfloat16), tmp_path / "bf.pt")
    state = read_torch_state_dict(tmp_path / "bf.pt")
    assert state["visual.proj"].dtype == np.float32
    convert(tmp_path / "bf.pt", tmp_path / "out.safetensors", dtype="float64")
    loaded = load_model(tmp_path / "out.safetensors")
    assert loaded.dtype == np.float64
    expected = torch.from_numpy(model.params["visual.proj"]).bfloat16().double().numpy()
    np.testing.assert_array_equal(loaded.params["visual.proj"], expected)


def test_hf_pytorch_model_bin_with_its_config(tmp_path):
    """HF's older format: pytorch_model.bin + config.json (heads and GELU only the config knows)."""
    import json

    from miniclip.pretrained.hf import hf_config_dict, openai_to_hf

    cfg = CLIPConfig(**{**CFG.to_dict(), "vision_heads": 4, "transformer_heads": 8,
                        "activation": "gelu"})
    model = CLIP(cfg, seed=1)
    hf = {k: torch.from_numpy(v.copy()) for k, v in openai_to_hf(model.params).items()}
    hf["text_model.embeddings.position_ids"] = torch.arange(CFG.context_length)[None]
    torch.save(hf, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(hf_config_dict(cfg)))
    with pytest.raises(ValueError, match="PyTorch weights only"):
        load_model(tmp_path)
    assert convert(tmp_path / "pytorch_model.bin", tmp_path / "model.safetensors") == cfg
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.cfg == cfg
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)


def test_inconsistent_checkpoints_are_refused(tmp_path, model):
    sd = openai_state_dict(model)
    sd["input_resolution"] = torch.tensor(224)
    torch.save(sd, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="input_resolution = 224, but the weights' shapes give 4"):
        convert(tmp_path / "a.pt", tmp_path / "a.safetensors")
    sd = openai_state_dict(model)
    sd["ln_final.bias"] = torch.zeros(3, dtype=torch.float16)
    torch.save(sd, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"ln_final\.bias: \(3,\), expected \(128,\)"):
        convert(tmp_path / "b.pt", tmp_path / "b.safetensors")
    sd = openai_state_dict(model)
    sd["visual.proj"] = sd["visual.proj"].float()
    torch.save(sd, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="mixes dtypes"):
        convert(tmp_path / "c.pt", tmp_path / "c.safetensors")
    torch.save([1, 2], tmp_path / "d.pt")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        convert(tmp_path / "d.pt", tmp_path / "d.safetensors")


def test_cli_wants_a_known_output_suffix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.pt"), str(tmp_path / "x.bin")])
    assert "dst must end in .safetensors or .npz" in capsys.readouterr().err
