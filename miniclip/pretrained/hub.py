"""Model names: ``miniclip.load("ViT-B/32")`` or ``load("openai/clip-vit-base-patch32")``.

A name is resolved through the Hugging Face Hub with the ``huggingface_hub`` library: the first
call downloads the repository's ``config.json`` and ``model.safetensors`` into the hub's cache
(checked against the hub's own sha256 hashes by ``huggingface_hub``), later calls read the cache.
OpenAI's names map to OpenAI's repositories on the hub:

    ViT-B/32        openai/clip-vit-base-patch32
    ViT-B/16        openai/clip-vit-base-patch16
    ViT-L/14        openai/clip-vit-large-patch14
    ViT-L/14@336px  openai/clip-vit-large-patch14-336

The cache folder is ``$HF_HUB_CACHE`` (default ``~/.cache/huggingface/hub``). Without a network,
or with ``HF_HUB_OFFLINE=1``, only the cache is read, and a name that is not there is an error
that says which folder to fill by hand (``huggingface-cli download ... --cache-dir``, or the
files copied into ``models--ORG--NAME/snapshots/REVISION/`` with ``refs/main`` naming REVISION).
"""

from __future__ import annotations

import os
from pathlib import Path

OPENAI_NAMES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}
FILES = ["config.json", "model.safetensors"]


def available_models() -> list[str]:
    """Names ``miniclip.load`` resolves through the hub: OpenAI's, then their HF repo ids. Any
    other HF repo id of a CLIPModel with safetensors weights works too.

    >>> available_models()[:2]
    ['ViT-B/32', 'ViT-B/16']
    """
    return list(OPENAI_NAMES) + list(OPENAI_NAMES.values())


def is_model_name(name) -> bool:
    """A name to resolve on the hub (not a file or folder that exists here)."""
    if not isinstance(name, str) or Path(name).exists():
        return False
    if name in OPENAI_NAMES:
        return True
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.endswith((".safetensors", ".npz"))


def hub_cache_dir() -> Path:
    """Where the hub keeps its downloads (read now, so a changed $HF_HUB_CACHE counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download(name) -> Path:
    """A name -> the local folder holding its config.json and model.safetensors."""
    repo_id = OPENAI_NAMES.get(name, name)
    cache = hub_cache_dir()
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    how = (f"fill the cache by hand: on a machine with a network run `huggingface-cli download "
           f"{repo_id} {' '.join(FILES)} --cache-dir {cache}` and copy {folder} here (or put "
           f"{' and '.join(FILES)} in {folder}/snapshots/REVISION/ and REVISION in "
           f"{folder}/refs/main), or download them into a folder and load that folder")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(f"loading {name!r} by name needs huggingface_hub (pip install "
                          f"'miniclip[hub]'); or {how}") from e
    offline = _offline()
    try:
        local = snapshot_download(repo_id, allow_patterns=FILES, cache_dir=cache,
                                  local_files_only=offline)
    except Exception as e:  # no network, not in the cache, no such repo, ...
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(e).__name__}: {e}"
        as_path = "" if name in OPENAI_NAMES else f"no such file or folder: {name}; as a name: "
        raise FileNotFoundError(f"{as_path}cannot get {name!r} ({repo_id}) from the Hugging Face "
                                f"Hub and it is not in the cache folder {cache} ({why}). To use "
                                f"it without a network, {how}.") from e
    missing = [f for f in FILES if not (Path(local) / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{repo_id}: the cached snapshot {local} lacks {missing}; "
                                f"{how}")
    return Path(local)
