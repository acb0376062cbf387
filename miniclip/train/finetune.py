"""``--init NAME_OR_PATH``: fine-tune from any model ``miniclip.load`` takes (a run folder, an HF
folder, a .safetensors or .npz file, or a name from ``miniclip.available_models()``).

The config (widths, layers, context, vocabulary) and the tokenizer come from that model; the
weights are its weights. The model must carry a tokenizer: OpenAI's vocabulary, or a miniclip run.

Fine-tuning wants gentler steps than training from scratch, so on the command line ``--init``
changes the defaults of the options not given (OpenCLIP's fine-tuning recipes are in this range):

    --lr 1e-5   --weight-decay 0.1   (and --warmup, as always: 10% of the run, at most 100)
"""

from __future__ import annotations

from dataclasses import dataclass

FINETUNE_DEFAULTS = {"lr": 1e-5, "weight_decay": 0.1}  # --warmup: 10% of the run, <= 100


@dataclass
class InitModel:
    cfg: object  # CLIPConfig
    tokenizer: object  # a BPETokenizer (callable)
    params: dict  # OpenAI-named float32 weights


def load_init(name_or_path) -> InitModel:
    """The model to start from: its config, tokenizer and float32 weights."""
    import numpy as np

    from miniclip.pretrained.loading import load
    from miniclip.text.tokenizer import ModelTokenizer

    model, _, tokenizer = load(name_or_path, dtype=np.float32)
    if tokenizer is None:
        raise ValueError(f"--init {name_or_path}: this model has no known tokenizer (not OpenAI's "
                         "vocabulary, not a miniclip run), so its captions cannot be tokenized")
    tokenizer = ModelTokenizer(tokenizer.merges, model.cfg.context_length)
    return InitModel(cfg=model.cfg, tokenizer=tokenizer, params=model.state_dict())
