"""Export from the model file alone (export/inputs.py): with the dataset folder absent, the
deploy graph, ONNX and the accelerator pair are written and checked on the images a user names
(or noise), INT8 calibrates on a folder of images, and evaluation is asked for, not assumed."""
import json
import os

import cv2
import numpy as np
import pytest

from ssd_nobias.commands import export as export_command
from ssd_nobias.errors import DataError
from ssd_nobias.export.inputs import calibration_inputs, image_files, parity_inputs


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of three pictures of another size than the model's input, and a text file."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.RandomState(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.randint(0, 256, (120, 160, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def without_dataset(cfg, tmp_path):
    out = cfg.clone()
    out.defrost()
    out.data.root = str(tmp_path / "gone")
    out.freeze()
    return out


def test_images_come_from_a_folder_a_glob_or_a_file(photos):
    assert [os.path.basename(p) for p in image_files(photos)] == ["p0.png", "p1.png", "p2.png"]
    assert image_files(os.path.join(photos, "p[12].png")) == image_files(photos)[1:]
    assert image_files(os.path.join(photos, "p0.png")) == image_files(photos)[:1]
    with pytest.raises(DataError, match="names no image"):
        image_files(os.path.join(photos, "notes.txt"))


def test_parity_inputs_say_where_they_came_from(alive_model, photos, tmp_path):
    cfg = alive_model[0]
    x, source = parity_inputs(cfg)
    assert x.shape == (4, 3, 300, 300) and source == f"4 val images of {cfg.data.root}"
    x, source = parity_inputs(cfg, photos)
    assert x.shape == (3, 3, 300, 300) and source == f"3 images of {photos}"
    gone = without_dataset(cfg, tmp_path)
    x, source = parity_inputs(gone)
    again, _ = parity_inputs(gone)
    assert x.shape == (8, 3, 300, 300) and source.startswith("8 noise images (no dataset at")
    assert (x.asnumpy() == again.asnumpy()).all()  # seeded: the same check every time


def test_calibration_reads_a_folder_or_the_training_images(alive_model, photos, tmp_path):
    cfg = alive_model[0]
    images, what = calibration_inputs(cfg, photos)
    assert len(images) == 3 and images[0].shape == (3, 300, 300) and what == {
        "images": 3, "source": photos}
    images, what = calibration_inputs(cfg, 5)
    assert len(images) == 5 and what == {"images": 5, "split": "train"}
    with pytest.raises(DataError, match="is not on this machine: give --calib-images a folder"):
        calibration_inputs(without_dataset(cfg, tmp_path), 5)


@pytest.mark.slow
def test_a_checkpoint_exports_every_format_with_the_dataset_absent(alive_model, photos,
                                                                   tmp_path, capsys):
    _, params, _, _ = alive_model
    out = tmp_path / "export"
    gone = tmp_path / "gone"
    assert export_command.main(["--params", params, "--out", str(out), "--formats", "onnx",
                                "int8", "--calib-images", photos, "--sample-images", photos,
                                f"data.root={gone}"]) == 0
    assert not gone.exists()
    with open(out / "export_report.json") as f:
        report = json.load(f)
    assert report["parity"]["inputs"] == f"3 images of {photos}"
    assert report["bias_free_layers"] == 35  # every feature conv; the heads keep theirs
    assert (report["onnx"]["conv_nodes_without_bias"], report["onnx"]["conv_nodes"]) == (35, 47)
    accelerator = report["accelerator"]
    assert accelerator["proof"]["ok"] and accelerator["parity"]["inputs"] == report[
        "parity"]["inputs"]
    int8 = accelerator["int8"]
    assert int8["proof"]["ok"] and int8["calibration"] == {"images": 3, "source": photos,
                                                           "method": "minmax"}
    assert int8["val"]["measured"] is False
    assert os.path.isfile(out / "accelerator" / "accelerator.int8.onnx")
    printed = capsys.readouterr().out
    assert f"minmax on 3 images of {photos}" in printed and "val: not measured" in printed


def test_a_count_of_training_images_without_the_dataset_is_refused(alive_model, tmp_path):
    _, params, _, _ = alive_model
    with pytest.raises(DataError, match="calibration reads 4 training images"):
        export_command.main(["--params", params, "--out", str(tmp_path / "export"),
                             "--formats", "int8", "--calib-images", "4",
                             f"data.root={tmp_path / 'gone'}"])
    assert not (tmp_path / "export").exists()
