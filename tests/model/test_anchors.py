"""Anchor sizes: NumPy anchors equal to the model's, IoU coverage computed exactly, the coverage
script on a generated dataset, and a config's own sizes reaching the model."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.model.anchors import (ANCHOR_PRESETS, MATCH_IOU, best_iou, coco_like_boxes,
                                      coverage, ssd_anchors_np)
from ssd_nobias.config import ConfigError, load_config
from ssd_nobias.model.ssd import build_model, get_model, preset, ssd_anchors
from ssd_nobias.data.synthetic import make_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name, sizes", [("ssd_300_mobilenet0.25_voc", None),
                                         ("ssd_512_mobilenet1.0_voc", None),
                                         ("ssd_300_mobilenet0.25_voc", ANCHOR_PRESETS["lite"])])
def test_numpy_anchors_are_the_models(name, sizes):
    net = get_model(name, anchor_sizes=sizes)
    net.initialize()
    size = int(name.split("_")[1])
    want = ssd_anchors(net, size, mx.cpu()).asnumpy().reshape(-1, 4)
    layout = preset(name, sizes)
    got = ssd_anchors_np(layout.sizes, layout.steps, layout.ratios, size)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)  # the model's are float32


def test_best_iou_and_coverage_by_size():
    anchors = np.array([[50, 50, 20, 20], [150, 150, 100, 50]], np.float64)  # cx cy w h
    boxes = np.array([[40, 40, 60, 60],  # anchor 0 itself: IoU 1
                      [45, 40, 65, 60],  # anchor 0 moved 5 px: 15 * 20 / (2 * 400 - 300)
                      [100, 125, 150, 175],  # half of anchor 1: 2500 / 5000
                      [0, 0, 5, 5]])  # nothing near
    np.testing.assert_allclose(best_iou(boxes, anchors), [1, 0.6, 0.5, 0])
    total, buckets = coverage(boxes, anchors, edges=(0, 16, 32, 1000))
    assert total == 0.75 and MATCH_IOU == 0.5
    assert [(b.boxes, b.covered) for b in buckets] == [(1, 0.0), (2, 1.0), (1, 1.0)]
    assert [b.label for b in buckets] == ["0-16 px", "16-32 px", "32-1000 px"]


def test_a_stride_16_map_misses_small_boxes_that_sit_between_its_cells():
    """GluonCV's 21 px anchors on the 16 px grid of the 300 models: a 21 px box centred on a
    cell is matched, one 8 px off in x and y is not: its best anchor is the cell's
    sqrt(21 * 45) px square, overlapping a / 2 + 2.5 px per axis (IoU 0.30)."""
    layout = preset("ssd_300_mobilenet1.0_voc", ANCHOR_PRESETS["gluoncv"])
    anchors = ssd_anchors_np(layout.sizes, layout.steps, layout.ratios, 300)
    on_cell = np.array([[8 + 16 * 5 - 10.5, 8 + 16 * 5 - 10.5, 8 + 16 * 5 + 10.5,
                         8 + 16 * 5 + 10.5]])
    between = on_cell + 8
    assert best_iou(on_cell, anchors)[0] == pytest.approx(1.0)
    a = np.sqrt(21 * 45)
    inter = (a / 2 + 2.5) ** 2
    assert best_iou(between, anchors)[0] == pytest.approx(inter / (441 + a * a - inter))
    assert inter / (441 + a * a - inter) < MATCH_IOU


def test_coco_like_boxes_have_cocos_size_mix_inside_the_image():
    boxes = coco_like_boxes(20000, 300, seed=3)
    assert boxes.min() >= 0 and boxes.max() <= 300
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) * np.sqrt(
        640 * 480) / 300  # back to COCO pixels
    small, large = (side < 32).mean(), (side >= 96).mean()
    assert abs(small - 0.41) < 0.02 and abs(large - 0.25) < 0.02


def test_the_300_models_take_ssds_scales_and_a_config_its_own_sizes():
    assert preset("ssd_300_mobilenet1.0_voc").sizes == ANCHOR_PRESETS["ssd"]
    sizes = list(ANCHOR_PRESETS["gluoncv"])
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                      [f"model.anchor_sizes={sizes}"])
    net = build_model(cfg, ["a", "b"])
    net.initialize()
    want = ssd_anchors_np(sizes, (16, 30, 60, 100, 150, 300), preset(cfg.model.name).ratios, 300)
    np.testing.assert_allclose(ssd_anchors(net, 300, mx.cpu()).asnumpy().reshape(-1, 4), want,
                               rtol=1e-6, atol=1e-4)
    with pytest.raises(ConfigError, match="model.anchor_sizes"):
        load_config(None, ["model.anchor_sizes=[30, 20, 40, 50, 60, 70, 80]"])


@pytest.mark.subprocess
def test_script_reports_each_preset_by_size(tmp_path):
    root = make_synthetic(str(tmp_path / "data"), train=12, val=2, size=128, seed=2)["root"]
    out = tmp_path / "coverage.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "anchor_coverage.py"),
                           "--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                           "--coco-like", "500", "--out", str(out), f"data.root={root}",
                           "model.anchor_sizes=[21,45,99,153,207,261,315]"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fraction with an anchor of IoU >= 0.5" in done.stdout
    report = json.loads(out.read_text())
    train = report["presets"]["voc_custom train"]
    assert set(train) == {"gluoncv", "ssd", "lite", "config"}
    assert train["config"] == train["gluoncv"]
    counts = [b["boxes"] for b in train["gluoncv"]["buckets"]]
    assert sum(counts) > 12 and report["presets"]["COCO-like"]["ssd"]["buckets"][0]["boxes"] > 100


def test_a_checkpoint_is_loaded_with_the_anchors_it_was_trained_with(tmp_path):
    """A run records its anchor sizes (config.yaml and every checkpoint); a checkpoint whose
    record disagrees with the config, or one from before the 300 models took SSD's scales, is
    refused with the setting that fits it."""
    from ssd_nobias.model.checkpoint import save_checkpoint
    from ssd_nobias.model.ssd import with_anchor_sizes
    from ssd_nobias.errors import DataError
    from ssd_nobias.runtime.predictors import load_trained

    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"))
    resolved = with_anchor_sizes(cfg)
    assert list(resolved.model.anchor_sizes) == list(ANCHOR_PRESETS["ssd"])
    net = build_model(cfg, ["a", "b"])
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    record = {"classes": ["a", "b"], "config": resolved.dump()}
    params = save_checkpoint(str(tmp_path / "now"), net, None, record)
    load_trained(cfg, params, [mx.cpu()], classes=["a", "b"])  # the preset it recorded
    other = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                        ["model.anchor_sizes=[21,45,99,153,207,261,315]"])
    with pytest.raises(DataError, match=r"trained with anchor sizes \[30,60,111,162,213,264,"
                                        r"315\], the config gives \[21,45,.*set model\."):
        load_trained(other, params, [mx.cpu()], classes=["a", "b"])
    old_record = cfg.clone()
    old_record.defrost()
    del old_record.model["anchor_sizes"]  # written before sizes were recorded
    params = save_checkpoint(str(tmp_path / "old"), net, None,
                             {"classes": ["a", "b"], "config": old_record.dump()})
    with pytest.raises(DataError, match=r"set model.anchor_sizes=\[21,45,99,153,207,261,315\]"):
        load_trained(cfg, params, [mx.cpu()], classes=["a", "b"])
    load_trained(other, params, [mx.cpu()], classes=["a", "b"])
