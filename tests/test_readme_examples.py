"""The README's examples of issue 12, run as written: "use the model" on a run folder and on an
HF folder (the same code, only ``path`` differs), and the script that writes a dataset."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miniclip.datasets import generate_dataset, load_split
from miniclip.model.clip import CLIP
from miniclip.model.config import CLIPConfig
from miniclip.pretrained.hf import save_hf
from miniclip.train.loop import TrainArgs, train

ROOT = Path(__file__).resolve().parents[1]


def readme_block(marker):
    """The code block right after ``<!-- marker ...-->`` in README.md."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- " + re.escape(marker) + r".*?-->\n```\w*\n(.*?)```", text, re.S)
    assert found, f"README.md has no block marked {marker!r}"
    return found.group(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    generate_dataset(root / "data", n_train=32, n_val=16, n_test=16, n_heldout=8, workers=1,
                     progress=False)
    train(TrainArgs(data=str(root / "data"), out=str(root / "run"), model="toy-tiny", steps=2,
                    batch_size=16, warmup=1, eval_every=0, checkpoint_every=2, log_every=1),
          progress=False, final_eval=False, log=lambda *a, **k: None)
    cfg = CLIPConfig(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=24,
                     vision_patch_size=8, vision_heads=2, context_length=77, vocab_size=49408,
                     transformer_width=16, transformer_heads=2, transformer_layers=1)
    save_hf(CLIP(cfg, seed=0), root / "hf")
    for name, colour in {"red.png": (220, 20, 30), "blue.jpg": (20, 40, 230)}.items():
        Image.new("RGB", (48, 40), colour).save(root / name)
    return root


@pytest.mark.parametrize("kind", ["run", "hf"])
def test_use_the_model_block_runs_on_every_kind(folders, kind, monkeypatch, capsys):
    code = readme_block("use-the-model")
    code = code.replace('path = "runs/toy"', f"path = {str(folders / kind)!r}", 1)
    monkeypatch.chdir(folders)  # red.png and blue.jpg are here
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["images"].shape[0] == 2 and scope["images"].dtype == scope["model"].dtype
    assert scope["image_features"].shape == (2, scope["model"].cfg.embed_dim)
    assert scope["logits_per_image"].shape == (2, 2)
    assert capsys.readouterr().out.strip().startswith("[")


def test_make_dataset_script(folders, tmp_path):
    split = load_split(folders / "data", "train")
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for i in range(12):
        folder = src / "sub" if i % 2 else src
        Image.fromarray(split.images[i]).save(folder / f"p{i}.{'png' if i % 3 else 'jpg'}")
        (folder / f"p{i}.txt").write_text(split.captions[i] + "\n")
    Image.fromarray(split.images[0]).save(src / "no_caption.png")  # left out: no .txt
    script = tmp_path / "make_dataset.py"
    script.write_text(readme_block("make_dataset.py"))
    proc = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("12 pairs")

    from miniclip.datasets.csv_pairs import CsvPairs
    from miniclip.datasets.shards import expand_shards, read_shard_pairs

    pairs = CsvPairs(tmp_path / "out" / "pairs.tsv")
    assert sorted(pairs.captions) == sorted(split.captions[:12])
    assert all(p.is_file() for p in pairs.paths)
    samples = read_shard_pairs(expand_shards(tmp_path / "out"))
    assert sorted(c for _, _, c in samples) == sorted(split.captions[:12])
    first = np.asarray(Image.open(pairs.paths[0]).convert("RGB"))
    assert first.shape == (32, 32, 3)
