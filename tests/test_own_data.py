"""Training on your own images and captions (issue 12): a CSV/TSV of (path, caption) and
WebDataset shards, both built here from a few hundred drawn toy images, each with one corrupt
image in the middle. Each trains a few steps, is interrupted, resumes bit for bit, evaluates."""

import os
import signal
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import miniclip
from miniclip.datasets import CLASSNAMES, generate_dataset, load_split
from miniclip.datasets.csv_pairs import CsvPairs
from miniclip.datasets.images import random_resized_crop
from miniclip.datasets.shards import ShardStream, expand_shards
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.pretrained.preprocess import Preprocess
from miniclip.train.cli import main
from miniclip.train.evaluate_own import caption_labels, read_zeroshot_classes
from miniclip.train.loop import TrainArgs, train

wds = pytest.importorskip("webdataset", reason="the [data] extra (in [test]) installs it")

N_TRAIN, N_VAL, CORRUPT = 192, 32, 50  # training pairs (one corrupt), val pairs, which one


def quiet(*_args, **_kwargs):
    pass


def write_pairs(folder, split, n, corrupt=None):
    """PNG files + (path, caption) rows; the image of row ``corrupt`` is garbage bytes."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / "images" / f"{split.name}_{i:04d}.png"
        if i == corrupt:
            path.write_bytes(b"this is not a png" * 10)
        else:
            Image.fromarray(split.images[i]).save(path)
        rows.append((path, split.captions[i]))
    return rows


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    generate_dataset(root / "toy", n_train=N_TRAIN, n_val=N_VAL, n_test=8, n_heldout=8,
                     workers=1, progress=False)
    train_split, val_split = load_split(root / "toy", "train"), load_split(root / "toy", "val")
    train_split.name, val_split.name = "train", "val"
    rows = write_pairs(root / "csv", train_split, N_TRAIN, corrupt=CORRUPT)
    with open(root / "csv" / "pairs.tsv", "w") as f:
        f.write("filepath\ttitle\n")
        f.writelines(f"images/{p.name}\t{c}\n" for p, c in rows)
    val_rows = write_pairs(root / "csv", val_split, N_VAL)
    with open(root / "csv" / "val.tsv", "w") as f:  # absolute paths work too
        f.write("filepath\ttitle\n")
        f.writelines(f"{p}\t{c}\n" for p, c in val_rows)
    with open(root / "csv" / "val.csv", "w") as f:  # comma-separated, other column names
        f.write("image,caption\n")
        f.writelines(f"{p},\"{c}\"\n" for p, c in val_rows)
    (root / "shards").mkdir()
    for s in range(4):  # 4 shards of 48 samples
        with wds.TarWriter(str(root / "shards" / f"{s:03d}.tar")) as sink:
            for i in range(s * 48, (s + 1) * 48):
                data = Path(rows[i][0]).read_bytes()
                sink.write({"__key__": f"sample{i:05d}", "png": data, "txt": rows[i][1]})
    (root / "classes.txt").write_text("# the toy world's classes\na photo of a {}.\n{}\n"
                                      + "\n".join(CLASSNAMES) + "\n")
    return root


def args_for(own, data, out, **overrides):
    base = dict(data=str(data), out=str(out), model="toy-tiny", steps=6, batch_size=16,
                warmup=2, lr=2e-3, eval_every=0, checkpoint_every=2, log_every=1,
                val_data=str(own / "csv" / "val.tsv"), zeroshot_classes=str(own / "classes.txt"))
    return TrainArgs(**{**base, **overrides})


def press_ctrl_c_at(stop_step):
    def after_step(step):
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGINT)
    return after_step


@pytest.mark.parametrize("kind", ["csv", "shards"])
def test_trains_evaluates_and_resumes_bit_for_bit(own, tmp_path, kind):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C (SIGINT) is handled in the main thread only")
    data = own / "csv" / "pairs.tsv" if kind == "csv" else own / "shards" / "{000..003}.tar"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = train(args_for(own, data, tmp_path / "full"), progress=False, log=quiet)
    skips = [str(w.message) for w in caught if "skipped image" in str(w.message)]
    # the CSV draws batches at random: 6 * 16 of 192 pairs may or may not hold the corrupt one;
    # the shard stream reads in order, shard by shard: 96 samples may or may not reach it
    for n, message in enumerate(skips, start=1):
        assert f"{n} image(s) skipped so far" in message
    assert full["skipped_images"] == len(skips)
    assert 0 <= full["retrieval_i2t_r1"] <= 1 and full["retrieval_n"] == N_VAL
    assert full["zeroshot_n"] > 0 and 0 <= full["zeroshot_top1"] <= 1

    part = train(args_for(own, data, tmp_path / "part"), progress=False, log=quiet,
                 after_step=press_ctrl_c_at(3))
    assert part["stopped"] and part["steps"] == 3
    resumed = train(None, resume=tmp_path / "part" / "checkpoint.safetensors", progress=False, log=quiet)
    assert resumed["steps"] == 6
    a = load_checkpoint(tmp_path / "full" / "checkpoint.safetensors")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.safetensors")
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
        assert np.array_equal(a.optimizer["m"][k], b.optimizer["m"][k]), k
    assert a.extra.get("data_position") == b.extra.get("data_position")
    if kind == "shards":
        assert a.extra["data_position"] == {"epoch": 0, "consumed": 96}

    # the trained model loads with OpenAI's preprocessing and its own tokenizer
    model, preprocess, tokenizer = miniclip.load(tmp_path / "full")
    assert type(preprocess) is Preprocess
    x = preprocess(own / "csv" / "images" / "val_0000.png")
    assert model.encode_image(x).shape == (1, model.cfg.embed_dim)
    assert tokenizer(["a red circle."]).shape == (1, model.cfg.context_length)


def test_corrupt_image_in_the_middle_is_skipped_and_counted(own, tmp_path):
    """All 192 CSV pairs in 12 batches of 16 (one epoch): the corrupt one is met exactly once."""
    with pytest.warns(UserWarning, match=r"skipped image .*train_0050.png.*1 image\(s\) skipped"):
        summary = train(args_for(own, own / "csv" / "pairs.tsv", tmp_path / "run", steps=12,
                                 val_data=None, zeroshot_classes=None),
                        progress=False, log=quiet)
    assert summary["skipped_images"] == 1 and summary["steps"] == 12


def test_each_shard_is_read_once_per_epoch_and_the_stream_resumes(own):
    urls = expand_shards(own / "shards")
    assert urls == expand_shards(own / "shards" / "{000..003}.tar") and len(urls) == 4
    stream = ShardStream(urls, seed=3)
    epoch0 = [next(stream)[0] for _ in range(N_TRAIN)]
    assert sorted(epoch0) == [f"sample{i:05d}" for i in range(N_TRAIN)]  # each sample once
    assert stream.position == {"epoch": 0, "consumed": N_TRAIN}
    first = next(stream)[0]
    assert stream.position == {"epoch": 1, "consumed": 1}
    epoch1 = [first] + [next(stream)[0] for _ in range(N_TRAIN - 1)]
    assert sorted(epoch1) == sorted(epoch0) and epoch1 != epoch0  # another shard order
    again = ShardStream(urls, seed=3, position={"epoch": 0, "consumed": 100})
    assert [next(again)[0] for _ in range(10)] == epoch0[100:110]


def test_csv_flags_and_bad_files(own, tmp_path):
    pairs = CsvPairs(own / "csv" / "val.csv", "image", "caption", ",")
    assert len(pairs) == N_VAL and pairs.paths[0].is_file()
    assert len(CsvPairs(own / "csv" / "pairs.tsv", separator="\\t")) == N_TRAIN  # '\t' typed
    with pytest.raises(ValueError, match=r"--csv-caption-key 'title' is not a column .*'caption'"):
        CsvPairs(own / "csv" / "val.csv", "image", "title", ",")
    with pytest.raises(FileNotFoundError, match="no CSV file"):
        CsvPairs(tmp_path / "none.csv")
    with pytest.raises(FileNotFoundError, match="2 of the 2 shards"):
        expand_shards(tmp_path / "{0,1}.tar")


def test_cli_trains_on_a_csv(own, tmp_path, capsys):
    assert main(["--data", str(own / "csv" / "pairs.tsv"), "--out", str(tmp_path / "run"),
                 "--model", "toy-tiny", "--steps", "2", "--batch-size", "16", "--eval-every", "0",
                 "--val-data", str(own / "csv" / "pairs.tsv"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "retrieval on 191 val pairs" in out  # 192 less the corrupt one
    assert main(["--data", str(own / "csv" / "pairs.tsv"), "--out", str(tmp_path / "bad"),
                 "--csv-img-key", "path", "--no-progress"]) == 2
    assert "--csv-img-key 'path' is not a column" in capsys.readouterr().err


def test_random_resized_crop_keeps_most_of_the_image():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = 255  # left half white: a crop of >= 90 % of the area keeps it near half
    for _ in range(20):
        out = random_resized_crop(Image.fromarray(image), 16, rng)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        assert 0.3 < (out[..., 0] > 127).mean() < 0.7


def test_zeroshot_classes_file_and_caption_labels(own):
    classes, templates = read_zeroshot_classes(own / "classes.txt")
    assert classes == list(CLASSNAMES) and templates == ["a photo of a {}.", "{}"]
    labels = caption_labels(["a small red circle in the top left.", "a red circle above a blue "
                             "square", "nothing"], classes)
    assert labels.tolist() == [CLASSNAMES.index("red circle"), -1, -1]


def test_init_finetunes_from_an_hf_folder_with_its_config_and_tokenizer(own, tmp_path):
    from miniclip.model.clip import CLIP
    from miniclip.model.config import CLIPConfig
    from miniclip.pretrained.hf import save_hf

    cfg = CLIPConfig(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=24,
                     vision_patch_size=8, vision_heads=2, context_length=77, vocab_size=49408,
                     transformer_width=16, transformer_heads=2, transformer_layers=1)
    start = CLIP(cfg, seed=5)
    save_hf(start, tmp_path / "hf")
    assert main(["--data", str(own / "csv" / "pairs.tsv"), "--init", str(tmp_path / "hf"),
                 "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "8",
                 "--eval-every", "0", "--no-progress"]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert ckpt.config.to_dict() == cfg.to_dict()
    assert (ckpt.train_args["lr"], ckpt.train_args["weight_decay"]) == (1e-5, 0.1)  # defaults
    assert len(ckpt.tokenizer["merges"]) == 48_894  # OpenAI's tokenizer came along
    moved = max(float(np.abs(ckpt.params[k] - start.params[k]).max()) for k in ckpt.params)
    assert 0 < moved < 1e-3  # fine-tuned from those weights, gently
    model, _, tokenizer = miniclip.load(tmp_path / "run")
    assert tokenizer(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]


def test_a_corrupt_sample_in_a_shard_is_skipped_once_per_epoch(own):
    from miniclip.train.owndata import ShardSource

    source = ShardSource(own / "shards", TrainArgs(seed=1), resolution=32)
    assert source.count_pairs() == N_TRAIN  # what --epochs counts in, without decoding
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match=r"sample00050 in the shards.*1 image\(s\) skipped"):
        batches = [source.batch(step, 16, 1, rng) for step in range(12)]  # one epoch
    assert source.skips.count == 1
    assert sum(len(images) for images, _ in batches) == N_TRAIN - 1
    assert all(im.shape == (32, 32, 3) for images, _ in batches for im in images)


def test_evaluate_command_on_a_run_trained_on_own_data(own, tmp_path, capsys):
    from miniclip.train.evaluate import main as evaluate_main

    train(args_for(own, own / "csv" / "pairs.tsv", tmp_path / "run", steps=2),
          progress=False, final_eval=False, log=quiet)
    assert evaluate_main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"retrieval on {N_VAL} val pairs" in out and "zero-shot top-1" in out


def test_init_from_a_run_on_the_toy_data(own, tmp_path):
    first = train(TrainArgs(data=str(own / "toy"), out=str(tmp_path / "a"), model="toy-tiny",
                            steps=2, batch_size=16, warmup=1, eval_every=0),
                  progress=False, final_eval=False, log=quiet)
    assert first["steps"] == 2
    train(TrainArgs(data=str(own / "toy"), out=str(tmp_path / "b"), init=str(tmp_path / "a"),
                    model="not-a-config-name-since-init-brings-one", steps=1, batch_size=16,
                    warmup=0, lr=1e-5, eval_every=0),
          progress=False, final_eval=False, log=quiet)
    a = load_checkpoint(tmp_path / "a" / "model.safetensors")
    b = load_checkpoint(tmp_path / "b" / "model.safetensors")
    assert a.config == b.config and a.tokenizer["merges"] == b.tokenizer["merges"]
    moved = max(float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params)
    assert 0 < moved < 1e-3


def test_own_data_options_on_the_toy_world_are_an_error(own, tmp_path):
    args = TrainArgs(data=str(own / "toy"), out=str(tmp_path / "x"), model="toy-tiny",
                     val_data=str(own / "csv" / "val.tsv"))
    with pytest.raises(ValueError, match="--val-data: only for --data CSV/TSV or .tar shards"):
        train(args, progress=False, log=quiet)
    with pytest.raises(ValueError, match="--report-to must be one of"):
        train(TrainArgs(data=str(own / "toy"), report_to="wandb"), progress=False, log=quiet)
    assert not (tmp_path / "x").exists()  # refused before the run folder is made
