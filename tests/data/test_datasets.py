"""The configured dataset: VOCdevkit years by data.val_splits, class names from a file."""
import numpy as np
import pytest

from ssd_nobias.config import load_config
from ssd_nobias.data.datasets import build_dataset, dataset_classes
from ssd_nobias.errors import DataError
from tests.data_files import obj, write_item


def test_voc_years_layout(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_item(root / "VOC2007", "000001", [obj("dog", (1, 1, 20, 20), difficult=1)],
               split="test")
    cfg = load_config(None, [f"data.root={root}", "data.val_splits=[[2007,test]]"])
    ds = build_dataset(cfg, "val")
    np.testing.assert_array_equal(ds[0][1], [[0, 0, 19, 19, 11, 1]])  # dog is VOC class 11
    assert len(dataset_classes(cfg)) == 20


def test_classes_from_a_file(tmp_path):
    (tmp_path / "classes.txt").write_text("Circle\nsquare\n\n")
    cfg = load_config(None, ["data.dataset=voc_custom", "model.name=ssd_300_mobilenet0.25_custom",
                             f"data.root={tmp_path}", "data.classes=[classes.txt]"])
    assert dataset_classes(cfg) == ["circle", "square"]
    cfg = load_config(None, ["data.dataset=voc_custom", "model.name=ssd_300_mobilenet0.25_custom",
                             f"data.root={tmp_path}", "data.classes=[nope.txt]"])
    with pytest.raises(DataError, match="nope.txt"):
        dataset_classes(cfg)
