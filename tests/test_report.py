"""--report-to tensorboard: TensorBoard event files from tensorboardX, beside metrics.jsonl."""

import pytest

from miniclip.datasets import generate_dataset
from miniclip.train.loop import TrainArgs, train
from miniclip.train.report import open_report
from miniclip.train.runfolder import read_jsonl

tbx = pytest.importorskip("tensorboardX", reason="the [logging] extra (in [test]) installs it")


def read_scalars(folder):
    """{tag: [(step, value)]} from TensorBoard event files (TFRecord framing: length, its crc,
    the Event proto, its crc), read with tensorboardX's own proto classes."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_tensorboard_gets_every_number_of_the_jsonl(tmp_path):
    generate_dataset(tmp_path / "data", n_train=32, n_val=16, n_test=16, n_heldout=8, workers=1,
                     progress=False)
    out = tmp_path / "run"
    train(TrainArgs(data=str(tmp_path / "data"), out=str(out), model="toy-tiny", steps=3,
                    batch_size=16, warmup=1, eval_every=0, checkpoint_every=3, log_every=1,
                    report_to="tensorboard"),
          progress=False, final_eval=False, log=lambda *a, **k: None)
    scalars = read_scalars(out / "tensorboard")
    jsonl = [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl")]
    losses = scalars["loss"]
    assert [s for s, _ in losses] == [s for s, _ in jsonl] == [1, 2, 3]
    assert [v for _, v in losses] == pytest.approx([v for _, v in jsonl], rel=1e-6)
    assert scalars["final/final_loss"][0][0] == 3


def test_jsonl_is_the_default_and_bad_values_are_named(tmp_path):
    assert TrainArgs().report_to == "jsonl" and open_report("jsonl", tmp_path) is None
    with pytest.raises(ValueError, match="report_to must be one of .*got 'wandb'"):
        open_report("wandb", tmp_path)
