"""Run tracking (ssd_nobias/engine/tracking.py): TensorBoard event files that hold what
metrics.csv holds, a detections picture per validation, and a resume's purge point."""
import glob
import os
import struct

import pytest

from conftest import DEMO_CONFIG, tiny_overrides
from ssd_nobias.config import load_config
from ssd_nobias.engine.metrics import read_metrics
from ssd_nobias.engine.train import train

pytest.importorskip("tensorboardX")


def read_events(log_dir):
    """Every Event of every event file under log_dir, file by file (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
    found = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        events, at = [], 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event()
            event.ParseFromString(data[at + 12:at + 12 + length])
            events.append(event)
            at += 12 + length + 4
        found.append(events)
    return found


def scalars(events):
    return {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value
            if v.HasField("simple_value")}


@pytest.mark.slow
def test_tensorboard_gets_the_rows_of_metrics_csv_and_a_picture_per_validation(tmp_path):
    from ssd_nobias.data.synthetic import make_synthetic

    data = make_synthetic(str(tmp_path / "data"), train=8, val=2, size=96, seed=2)["root"]
    out = tmp_path / "run"
    cfg = load_config(DEMO_CONFIG, tiny_overrides(data, out, "tb", **{
        "train.epochs": 2, "train.val_interval": 1, "train.log_interval": 1,
        "train.tensorboard": "true", "eval.num_images": 2}))
    train(cfg)
    (events,) = read_events(str(out / "tensorboard"))
    logged = scalars(events)
    rows = read_metrics(str(out))
    want = {}
    for row in rows:
        for key, tag in (("loss", "loss/total"), ("cls_loss", "loss/class"),
                         ("box_loss", "loss/box"), ("lr", "train/lr"),
                         ("images_per_s", "train/images_per_s"), ("val_map", "val/voc07")):
            if row[key]:
                want[(tag, int(row["iteration"]))] = float(row[key])
    assert set(logged) == set(want) and len(want) == 4 * 5 + 2  # 4 iterations, 2 validations
    for key, value in want.items():  # the csv keeps 6 significant digits
        assert logged[key] == pytest.approx(value, rel=1e-5)
    pictures = [(e.step, v.image) for e in events for v in e.summary.value
                if v.tag == "val/detections"]
    assert [step for step, _ in pictures] == [2, 4]
    assert all(image.width > 0 and image.encoded_image_string[:4] == b"\x89PNG"
               for _, image in pictures)

    again = load_config(DEMO_CONFIG, tiny_overrides(data, out, "tb", **{
        "train.epochs": 3, "train.val_interval": 1, "train.log_interval": 1,
        "train.tensorboard": "true", "eval.num_images": 2, "train.resume": "auto"}))
    train(again)
    first, second = read_events(str(out / "tensorboard"))
    purge = [e.step for e in second if e.HasField("session_log")]
    assert purge == [5]  # TensorBoard hides the first file's steps from 5 on
    assert {step for _, step in scalars(second)} == {5, 6}
