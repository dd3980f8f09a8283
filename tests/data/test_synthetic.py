"""The synthetic dataset: deterministic bytes, readable by GluonCV's own loaders, varied scenes."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from gluoncv.data import VOCDetection

from ssd_nobias.data.coco import COCOFormatDetection
from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.data.synthetic import HARD_CLASSES, SHAPE_CLASSES, make_synthetic, voc_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def digest(folder):
    """Hash of every file's relative path and bytes under folder."""
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("custom"))
    return make_synthetic(out, train=24, val=4, size=160, seed=3)


def test_same_seed_writes_the_same_bytes(tmp_path, custom):
    again = make_synthetic(str(tmp_path / "again"), train=24, val=4, size=160, seed=3)
    assert digest(again["root"]) == digest(custom["root"])
    other = make_synthetic(str(tmp_path / "other"), train=24, val=4, size=160, seed=4)
    assert digest(other["root"]) != digest(custom["root"])


def test_custom_layout_files(custom):
    root = custom["root"]
    assert custom["classes"] == list(SHAPE_CLASSES)
    with open(os.path.join(root, "classes.txt")) as f:
        assert f.read().split() == list(SHAPE_CLASSES)
    for split, count in (("train", 24), ("val", 4)):
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt")) as f:
            ids = f.read().split()
        assert len(ids) == count
        for i in ids:
            assert os.path.isfile(os.path.join(root, "JPEGImages", i + ".jpg"))
            assert os.path.isfile(os.path.join(root, "Annotations", i + ".xml"))


def test_scenes_are_varied_and_boxes_inside(custom):
    ds = VOCFormatDetection(custom["root"], [("", "train")], custom["classes"])
    labels = [ds[i][1] for i in range(len(ds))]
    counts = [len(lab) for lab in labels]
    assert min(counts) >= 1 and max(counts) >= 4
    every = np.concatenate(labels)
    assert set(every[:, 4].astype(int)) == {0, 1, 2, 3}
    assert 0 < every[:, 5].sum() < len(every)  # some, not all, difficult
    sides = np.minimum(every[:, 2] - every[:, 0], every[:, 3] - every[:, 1])
    assert sides.min() < 20 and sides.max() > 70  # small to large at size 160
    aspect = (every[:, 2] - every[:, 0]) / (every[:, 3] - every[:, 1])
    assert aspect.min() < 0.75 and aspect.max() > 1.33
    for i, lab in enumerate(labels):
        w, h = ds.image_size(i)
        assert (lab[:, :2] >= 0).all() and (lab[:, 2] < w).all() and (lab[:, 3] < h).all()
    touching = [(lab[:, 0] == 0).any() or (lab[:, 1] == 0).any() for lab in labels]
    assert any(touching)  # some objects are cut by the border


def test_hard_variant_has_eight_classes_and_more_smaller_objects(tmp_path, custom):
    hard = make_synthetic(str(tmp_path), train=24, val=4, size=160, seed=3, variant="hard")
    assert hard["classes"] == list(HARD_CLASSES) and len(HARD_CLASSES) == 8
    with open(os.path.join(hard["root"], "classes.txt")) as f:
        assert f.read().split() == list(HARD_CLASSES)

    def boxes(info):
        ds = VOCFormatDetection(info["root"], [("", "train")], info["classes"])
        return np.concatenate([ds[i][1] for i in range(len(ds))])

    easy, every = boxes(custom), boxes(hard)
    assert set(every[:, 4].astype(int)) == set(range(8))
    assert len(every) > 1.3 * len(easy)  # 3-9 objects a scene against 2-6

    def median_side(b):
        return np.median(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))

    assert median_side(every) < 0.6 * median_side(easy)


def test_voc2007_layout_loads_in_gluoncv_unchanged(tmp_path):
    info = make_synthetic(str(tmp_path), train=6, val=3, size=128, seed=1, layout="voc2007")
    assert info["root"] == str(tmp_path / "VOCdevkit")
    assert info["classes"] == [voc_names()[c] for c in SHAPE_CLASSES]
    trainval = VOCDetection(root=info["root"], splits=[(2007, "trainval")])
    test = VOCDetection(root=info["root"], splits=[(2007, "test")])
    assert (len(trainval), len(test)) == (6, 3)
    img, label = trainval[0]
    assert img.shape[2] == 3 and label.shape[1] == 6
    assert label[:, 4].max() < 4  # the first four VOC classes
    ours = VOCFormatDetection(os.path.join(info["root"]), [(2007, "trainval")],
                              VOCDetection.CLASSES)
    np.testing.assert_array_equal(ours[0][1], label)


def test_coco_format_has_the_same_boxes_as_voc(tmp_path):
    voc = make_synthetic(str(tmp_path / "voc"), train=5, val=2, size=128, seed=2)
    coco = make_synthetic(str(tmp_path / "coco"), train=5, val=2, size=128, seed=2, fmt="coco")
    assert os.path.isfile(tmp_path / "coco" / "annotations" / "instances_train.json")
    vds = VOCFormatDetection(voc["root"], [("", "val")], voc["classes"])
    cds = COCOFormatDetection(coco["root"], ["instances_val"])
    assert cds.classes == voc["classes"] and len(cds) == 2
    for i in range(2):
        np.testing.assert_array_equal(cds[i][1], vds[i][1][:, :5])
        np.testing.assert_array_equal(cds[i][0].asnumpy(), vds[i][0].asnumpy())


def test_a_test_split_leaves_train_and_val_as_they_were(tmp_path, custom):
    """The study's split: its own images and scenes, train and val byte for byte as without it,
    and the dataset loader reads it by name."""
    with_test = make_synthetic(str(tmp_path / "t"), train=24, val=4, size=160, seed=3, test=5)
    assert with_test["splits"] == ("train", "val", "test") and with_test["counts"]["test"] == 5
    main = os.path.join(with_test["root"], "ImageSets", "Main")
    ids = {s: open(os.path.join(main, s + ".txt")).read().split() for s in ("train", "val", "test")}
    assert ids["test"] == [f"{29 + i:06d}" for i in range(5)]  # after train's 24 and val's 4
    for name in ids["train"] + ids["val"]:
        for sub, ext in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
            with open(os.path.join(custom["root"], sub, name + ext), "rb") as a, \
                    open(os.path.join(with_test["root"], sub, name + ext), "rb") as b:
                assert a.read() == b.read()
    test = VOCFormatDetection(with_test["root"], [("", "test")], list(SHAPE_CLASSES))
    val = VOCFormatDetection(with_test["root"], [("", "val")], list(SHAPE_CLASSES))
    assert len(test) == 5
    assert not np.array_equal(test[0][0].asnumpy(), val[0][0].asnumpy())


@pytest.mark.parametrize("kwargs, key", [({"layout": "voc2012"}, "layout"),
                                         ({"fmt": "darknet"}, "format"),
                                         ({"test": 3, "layout": "voc2007"}, "test split"),
                                         ({"train": 0}, "train"), ({"size": 10}, "size"),
                                         ({"variant": "coco80"}, "variant")])
def test_bad_arguments(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        make_synthetic(str(tmp_path), **kwargs)


@pytest.mark.slow
@pytest.mark.subprocess
def test_script(tmp_path):
    script = os.path.join(ROOT, "scripts", "make_synthetic_voc.py")
    ok = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--train", "2",
                         "--val", "1", "--test", "2", "--size", "96"], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 2 train, 1 val, 2 test images" in ok.stdout
    bad = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--size", "8"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: size") and "Traceback" not in bad.stderr


def test_a_folder_holding_other_files_is_refused_and_a_rebuild_replaces_the_dataset_whole(
        tmp_path):
    """make-synthetic never mixes a new dataset into an old one nor removes a user's files:
    a folder it wrote is replaced whole, any other non-empty folder is refused untouched."""
    from ssd_nobias.errors import UserError

    out = tmp_path / "data"
    first = make_synthetic(str(out), train=3, val=1, size=64, seed=1)
    assert first["root"] == str(out)
    again = make_synthetic(str(out), train=2, val=1, size=64, seed=1, fmt="yolo")
    assert again["root"] == str(out) and sorted(os.listdir(out)) == ["data.yaml", "images",
                                                                      "labels"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files this command did not write \(notes"):
        make_synthetic(str(out), train=2, val=1, size=64)
    assert (out / "notes.txt").read_text() == "mine" and len(os.listdir(tmp_path)) == 1
    voc2007 = make_synthetic(str(tmp_path / "v"), train=2, val=1, size=64, layout="voc2007")
    assert voc2007["root"] == str(tmp_path / "v" / "VOCdevkit")


def test_what_a_killed_build_left_beside_its_folder_is_removed_by_the_next(tmp_path):
    """SIGKILL mid-build leaves the stage <out>.tmp-<pid>; the next build removes it, as
    export does."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"data.tmp-{dead.pid}" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "data.tmp-notes").mkdir()  # no writer's pid in its name: not a stage
    make_synthetic(str(tmp_path / "data"), train=2, val=1, size=64)
    assert sorted(os.listdir(tmp_path)) == ["data", "data.tmp-notes"]
