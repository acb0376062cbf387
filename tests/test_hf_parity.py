"""miniclip against the PyTorch reference: transformers.CLIPModel, same weights, same numbers.

Each case builds a small random ``transformers.CLIPModel``, saves it with ``save_pretrained``
(model.safetensors + config.json), loads the folder with miniclip and compares image
embeddings, text embeddings and logits (<= 1e-5 absolute in float32, <= 1e-10 in float64), then
the gradient of the contrastive loss for every weight against torch autograd (float64).

Written for transformers 5.x (5.23 here), which differs from 4.x in two ways that matter:
``get_image_features`` / ``get_text_features`` return an output object whose ``pooler_output``
holds the projected embedding (4.x returned the tensor), and attention is "sdpa" by default.
The "eager" attention computes its softmax in float32 even for a float64 model, so float64
parity (1e-10) needs "sdpa", which stays in float64; we ask for it explicitly.

Text pooling: HF pools at the first ``eos_token_id`` in each row, except when eos_token_id == 2
(configs from before transformers PR #24773), where it pools at the largest id, as OpenAI does
and miniclip does. These configs make the end token the largest id of the vocabulary
(eos_token_id = vocab_size - 1) and each text has exactly one, so both rules pick the same place.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests compare with PyTorch: pip install "
                            "torch==2.13.0 (the CPU wheel) and transformers")
transformers = pytest.importorskip("transformers", reason="parity tests compare with Hugging "
                                   "Face's CLIPModel: pip install transformers")

from PIL import Image  # noqa: E402

from miniclip.model.clip import CLIP  # noqa: E402
from miniclip.pretrained.hf import hf_to_openai, save_hf  # noqa: E402
from miniclip.pretrained.loading import load_model  # noqa: E402
from miniclip.pretrained.preprocess import Preprocess  # noqa: E402

transformers.logging.set_verbosity_error()

# (vision width, heads, layers, patch, resolution, text width, heads, layers, vocab, context,
#  projection dim, activation)
CASES = {
    "quickgelu-v48x3h-t32x2h": (48, 3, 2, 4, 12, 32, 2, 1, 100, 9, 24, "quick_gelu"),
    "gelu-v64x4h-t40x5h": (64, 4, 1, 8, 16, 40, 5, 2, 64, 7, 16, "gelu"),
    "quickgelu-v16x1h-t24x3h-patch2": (16, 1, 1, 2, 6, 24, 3, 2, 50, 5, 8, "quick_gelu"),
    "gelu-v48x6h-t16x1h-patch3": (48, 6, 2, 3, 9, 16, 1, 1, 30, 6, 40, "gelu"),
}
N = 4  # images and texts per batch


def hf_model(vw, vh, vl, patch, res, tw, th, tl, vocab, ctx, proj, act):
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=tw, intermediate_size=4 * tw,
                         num_hidden_layers=tl, num_attention_heads=th,
                         max_position_embeddings=ctx, hidden_act=act,
                         eos_token_id=vocab - 1, bos_token_id=vocab - 2, pad_token_id=0),
        vision_config=dict(hidden_size=vw, intermediate_size=4 * vw, num_hidden_layers=vl,
                           num_attention_heads=vh, image_size=res, patch_size=patch,
                           hidden_act=act),
        projection_dim=proj)
    model = transformers.CLIPModel(config)
    model.set_attn_implementation("sdpa")
    # HF's initialisation leaves LayerNorms at (1, 0) and biases at 0: randomise everything so
    # that no tensor can be mapped to the wrong place and still agree.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue  # ln(1/0.07), as CLIP starts
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:  # layer_norm1/2, pre_layrnorm, post_layernorm, final_layer_norm
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            elif p.ndim >= 2:
                p.copy_(noise * p[0].numel() ** -0.5)  # std 1 / sqrt(fan_in)
            else:
                p.copy_(0.1 * noise)
    return model.eval()


def batch(res, vocab, ctx, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((N, 3, res, res)).astype(np.float32)
    tokens = np.zeros((N, ctx), np.int64)
    for i in range(N):  # start, words, end (the largest id), padding
        length = rng.integers(1, ctx - 1)
        tokens[i, 0] = vocab - 2
        tokens[i, 1:1 + length] = rng.integers(1, vocab - 2, size=length)
        tokens[i, 1 + length] = vocab - 1
    return images, tokens


def embedding(output):
    """transformers 5.x returns an output object (pooler_output projected); 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def reference(model, images, tokens, dtype):
    model = model.to(dtype)
    pixels, ids = torch.from_numpy(images).to(dtype), torch.from_numpy(tokens)
    with torch.no_grad():
        img = embedding(model.get_image_features(pixel_values=pixels)).numpy()
        txt = embedding(model.get_text_features(input_ids=ids)).numpy()
        logits = model(input_ids=ids, pixel_values=pixels).logits_per_image.numpy()
    return img, txt, logits


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    args = CASES[request.param]
    model = hf_model(*args)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)  # model.safetensors + config.json
    res, vocab, ctx = args[4], args[8], args[9]
    return request.param, model, folder, batch(res, vocab, ctx)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_embeddings_and_logits_match(case, dtype, tol):
    name, hf, folder, (images, tokens) = case
    ours = load_model(folder, dtype=dtype)
    img, txt, logits = reference(hf, images, tokens, getattr(torch, np.dtype(dtype).name))
    images = images.astype(dtype)
    # Logits are exp(logit_scale) ~ 14.3 times the cosine similarity. In float32 both libraries
    # round each embedding to ~1e-6, so their raw logits can sit ~1e-5 apart (a few float32 ulps
    # at 14) with nothing wrong. The float32 bound is therefore applied to the cosine similarity,
    # logits / scale; in float64 the raw logits themselves agree to 1e-10.
    scale = float(np.exp(ours.params["logit_scale"])) if dtype == np.float32 else 1.0
    errors = {"image": np.abs(ours.encode_image(images) - img).max(),
              "text": np.abs(ours.encode_text(tokens) - txt).max(),
              "logits": np.abs(ours(images, tokens)[0] - logits).max() / scale}
    print(f"{name} {np.dtype(dtype).name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    for what, err in errors.items():
        assert err <= tol, f"{name} {what} max abs difference {err:.2e} > {tol:.0e}"
    assert np.abs(logits).max() > 0.5  # the comparison is on numbers of some size


def test_gradients_match_autograd(case):
    name, hf, folder, (images, tokens) = case
    hf = hf.to(torch.float64)
    hf.zero_grad()
    logits = hf(input_ids=torch.from_numpy(tokens),
                pixel_values=torch.from_numpy(images).double()).logits_per_image
    labels = torch.arange(N)
    ce = torch.nn.functional.cross_entropy
    loss = (ce(logits, labels) + ce(logits.T, labels)) / 2  # OpenAI's symmetric loss
    loss.backward()
    expected = hf_to_openai({k: p.grad.numpy() for k, p in hf.named_parameters()})

    ours = load_model(folder, dtype=np.float64)
    our_loss, grads = ours.loss_and_grads(images.astype(np.float64), tokens)
    assert our_loss == pytest.approx(loss.item(), rel=1e-12)
    assert sorted(grads) == sorted(expected)
    worst = 0.0
    for key, g in grads.items():
        scale = np.abs(expected[key]).max()
        assert scale > 0, f"{key}: the reference gradient is zero, the test would be empty"
        err = np.abs(g - expected[key]).max() / scale
        worst = max(worst, err)
        assert err <= 1e-10, f"{name} d{key}: relative error {err:.2e}"
    print(f"{name} gradients: worst relative error {worst:.1e} over {len(grads)} tensors")


def test_save_hf_is_read_by_transformers(tmp_path):
    """miniclip -> HF folder -> transformers.CLIPModel.from_pretrained: the same model."""
    from miniclip.model.config import CLIPConfig

    cfg = CLIPConfig(embed_dim=12, image_resolution=8, vision_layers=1, vision_width=32,
                     vision_patch_size=4, vision_heads=4, context_length=6, vocab_size=40,
                     transformer_width=24, transformer_heads=3, transformer_layers=2,
                     activation="gelu")
    ours = CLIP(cfg, seed=5, dtype=np.float64)
    save_hf(ours, tmp_path)
    hf = transformers.CLIPModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert hf.config.text_config.hidden_act == "gelu"
    assert hf.config.vision_config.num_attention_heads == 4
    images, tokens = batch(8, 40, 6, seed=1)
    images = images.astype(np.float64)
    _, _, logits = reference(hf, images, tokens, torch.float64)
    np.testing.assert_allclose(ours(images, tokens)[0], logits, rtol=0, atol=1e-10)


def _smooth_image(rng, width, height, channels=3):
    """A photo-like image: random colours, bilinearly enlarged (no flat areas, no noise only)."""
    small = (rng.random((height // 8 + 1, width // 8 + 1, channels)) * 255).astype(np.uint8)
    return Image.fromarray(small.squeeze()).resize((width, height), Image.BILINEAR)


def test_preprocess_matches_hf_image_processor():
    """HF's Pillow-based CLIPImageProcessor gives the same pixels as OpenAI's pipeline, bit for
    bit, on RGB and grey images. Two documented differences: HF converts to RGB *before*
    resizing (OpenAI after), which matters for palette images, and HF composites transparent
    images onto white (OpenAI drops alpha). On an image already converted the HF way, the two
    agree again."""
    try:
        from transformers import CLIPImageProcessorPil as Processor  # transformers 5.x
    except ImportError:
        from transformers import CLIPImageProcessor as Processor  # 4.x: Pillow-based already
    processor = Processor()  # openai/clip-vit-base-patch32's settings: 224, bicubic, CLIP mean/std
    rng = np.random.default_rng(0)
    rgba = np.concatenate([np.asarray(_smooth_image(rng, 320, 240)),
                           np.full((240, 320, 1), 128, np.uint8)], axis=-1)
    images = {"640x480": _smooth_image(rng, 640, 480), "227x225": _smooth_image(rng, 227, 225),
              "100x500": _smooth_image(rng, 100, 500), "50x40 upscaled": _smooth_image(rng, 50, 40),
              "noise": Image.fromarray((rng.random((333, 251, 3)) * 255).astype(np.uint8)),
              "grey": _smooth_image(rng, 320, 240, 1).convert("L"),
              "RGBA": Image.fromarray(rgba, mode="RGBA"),
              "palette": _smooth_image(rng, 320, 240).convert("P")}
    preprocess = Preprocess(224)
    for name, image in images.items():
        theirs = processor(images=image, return_tensors="np")["pixel_values"][0]
        if image.mode == "RGBA":
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            hf_way = Image.alpha_composite(white, image).convert("RGB")
        else:
            hf_way = image.convert("RGB") if image.mode == "P" else image
        np.testing.assert_array_equal(preprocess(hf_way)[0], theirs, err_msg=name)
        if hf_way is not image:  # for these OpenAI's pipeline (miniclip's) gives other pixels
            assert np.abs(preprocess(image)[0] - theirs).max() > 0.1, name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_embeddings_are_within_a_stated_tolerance_of_float32(case, dtype):
    """The same checkpoint loaded with dtype="bfloat16"/"float16" (weights rounded once, mixed
    precision: kernels/mixed.py) against PyTorch's float32 embeddings. Each op rounds its result
    to 16 bits (u16 relative) and the weights are rounded too; over the ~6 ops of each of L
    blocks the errors add like a random walk. Stated tolerance, relative to the largest entry:
    2 u16 sqrt(6 L + 4) (bfloat16: 0.031 for L = 2; float16: 0.0039). Measured on these cases:
    up to 0.014 (bfloat16) and 0.0022 (float16)."""
    from miniclip.kernels.dtypes import unit_roundoff

    name, hf, folder, (images, tokens) = case
    ours = load_model(folder, dtype=dtype)
    img, txt, _ = reference(hf, images, tokens, torch.float32)
    layers = max(ours.cfg.vision_layers, ours.cfg.transformer_layers)
    tol = 2 * unit_roundoff(dtype) * np.sqrt(6 * layers + 4)
    for what, got, want in (("image", ours.encode_image(images), img),
                            ("text", ours.encode_text(tokens), txt)):
        assert got.dtype == dtype
        err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
        print(f"{name} {dtype} {what}: relative error {err:.1e} (tolerance {tol:.1e})")
        assert err <= tol, f"{name} {dtype} {what}: {err:.2e} > {tol:.2e}"
