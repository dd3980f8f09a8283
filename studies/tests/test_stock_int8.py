"""The stock INT8 baseline (studies/ssd_nobias_studies/stock_int8.py): a stock-BatchNorm model's
accelerator graph quantized the ordinary way, biases and asymmetric activations included, run
through the same host part."""
import os

import mxnet as mx
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import CLASSES, DEMO_CONFIG
from ssd_nobias.config import load_config
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.errors import DataError
from ssd_nobias.export.proof import prove

pytestmark = pytest.mark.slow
pytest.importorskip("onnxruntime")
STOCK_INT8 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                          "stock_int8.py")


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """A stock-BatchNorm demo model with real statistics, exported: (cfg, params, folder)."""
    from ssd_nobias.engine.train import initialized_model
    from ssd_nobias.export.deploy import export_deploy
    from ssd_nobias.model.checkpoint import save_checkpoint

    base = tmp_path_factory.mktemp("stock")
    root = make_synthetic(str(base / "data"), train=8, val=4, size=96, seed=3)["root"]
    cfg = load_config(DEMO_CONFIG, [f"data.root={root}", f"output_dir={base / 'run'}",
                                    "data.num_workers=0", "model.norm=batchnorm"])
    net = initialized_model(cfg, CLASSES, [mx.cpu()])
    noise = mx.nd.array(np.random.RandomState(0).normal(0, 1, (2, 3, 300, 300)))
    with mx.autograd.train_mode():
        for _ in range(20):
            net(noise)
    params = save_checkpoint(str(base / "model"), net, None,
                             {"classes": CLASSES, "config": cfg.dump()})
    export_deploy(cfg, params, str(base / "export"))
    return cfg, params, str(base / "export")


def test_the_baseline_is_quantized_the_ordinary_way(stock):
    from ssd_nobias_studies.stock_int8 import export_stock_int8
    from ssd_nobias.runtime.predictors import SplitPredictor

    cfg, params, folder = stock
    report = export_stock_int8(cfg, params, folder, calib_images=4, progress=False)
    path = report["int8"]
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    activation_zps = [inits[n.input[2]] for n in model.graph.node
                      if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert any(zp.dtype == np.uint8 and np.any(zp != 0) for zp in activation_zps)
    biases = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert len(biases) == 35  # every feature conv keeps its folded bias; heads' go to the host
    proof = prove(path)
    assert not proof.ok and any("Conv has a bias input" in p for p in proof.problems)
    assert any("is not 0" in p for p in proof.problems)
    assert set(report["val"]) == {"metric", "float32_pair", "int8_pair"}
    layers = report["layers"]
    assert [layer["layer"] for layer in layers][:3] == ["conv0", "dw1", "pw1"]
    assert len(layers) == 47 and all(np.isfinite(layer["sqnr_db"]) for layer in layers)
    assert all(0 < layer["channel_range_used"] <= 1 for layer in layers)
    assert os.path.isfile(os.path.join(folder, "stock_int8", "stock_int8.json"))
    pair = SplitPredictor(os.path.join(folder, "stock_int8"), graph="accelerator.int8.onnx")
    ids, scores, boxes = pair(mx.nd.array(np.zeros((1, 3, 300, 300), np.float32)))
    assert boxes.shape[-1] == 4


def test_a_bias_free_config_is_refused(stock):
    from ssd_nobias_studies.stock_int8 import export_stock_int8

    cfg, params, folder = stock
    nobias = load_config(DEMO_CONFIG, [f"data.root={cfg.data.root}", "data.num_workers=0"])
    with pytest.raises(DataError, match="says model.norm=nobias"):
        export_stock_int8(nobias, params, folder, calib_images=2, progress=False)


@pytest.mark.parametrize("which", ["stock", "bias-free"])
def test_both_exports_want_the_deploy_graph_beside_them(stock, which, tmp_path):
    from ssd_nobias.export.split import export_accelerator
    from ssd_nobias_studies.stock_int8 import export_stock_int8

    cfg, params, _ = stock
    empty = str(tmp_path / "export")
    os.makedirs(empty)
    export = export_stock_int8 if which == "stock" else export_accelerator
    with pytest.raises(DataError, match=r"ssd_300_mobilenet0\.25_custom-symbol\.json is missing"):
        export(cfg, params, empty, progress=False)
    assert os.listdir(empty) == []  # nothing half-written


@pytest.mark.slow
@pytest.mark.subprocess
def test_bench_sets_the_two_int8_pairs_side_by_side(tiny_run, tmp_path_factory, tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    from conftest import make_tiny_data, tiny_overrides
    from ssd_nobias.data.datasets import val_set
    from ssd_nobias.engine.train import train
    from ssd_nobias.export.split import pair_val_map
    from ssd_nobias.runtime.accelerator import FLOAT_ONNX

    bias_free = str(tmp_path / "bias_free")
    shutil.copytree(tiny_run, bias_free)  # the bench writes the exports into the run
    data = make_tiny_data(tmp_path_factory, "stock_bench", train=8, val=2, seed=0)
    stock = str(tmp_path / "stock")
    train(load_config(DEMO_CONFIG, tiny_overrides(data, stock, "t", **{
        "train.epochs": 1, "model.norm": "batchnorm", "eval.batch_size": 2})))
    out = tmp_path / "stock_int8.json"
    done = subprocess.run([sys.executable, STOCK_INT8,
                           "--bias-free", bias_free, "--stock", stock, "--calib-images", "2",
                           "--rounds", "2", "--iters", "1", "--calib-method", "percentile",
                           "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(out) as f:
        saved = json.load(f)
    assert [row["arm"] for row in saved["rows"]] == ["bias-free", "stock"]
    assert [row["run"] for row in saved["rows"]] == [bias_free, stock]
    assert saved["mean_drop_points"]["stock"] == saved["rows"][1]["drop_points"]
    assert saved["bias_free_minus_stock_drop_points"] == pytest.approx(
        saved["rows"][0]["drop_points"] - saved["rows"][1]["drop_points"])
    assert all(len(r) == 2 and min(r) > 0 for r in saved["int8_ratio_per_round"].values())
    for arm in ("bias-free", "stock"):
        assert saved["ort_optimized_ops"][arm]["QLinearConv"] == 47
        assert min(saved["images_per_s"][arm]["int8"]) > 0
    assert "round by round, batch 8" in done.stdout
    for row in saved["rows"]:
        q = row["val"]["sqnr"]
        assert q["min_db"] <= q["median_db"] and q["weakest_layer"]
    assert "mean drop: bias-free" in done.stdout
    assert saved["calibration"] == {"images": 2, "method": "percentile"}

    untimed = tmp_path / "untimed.json"  # --rounds 0: the same accuracy figures, nothing timed
    done = subprocess.run([sys.executable, STOCK_INT8,
                           "--bias-free", bias_free, "--stock", stock, "--calib-images", "2",
                           "--rounds", "0", "--calib-method", "percentile", "--out",
                           str(untimed)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(untimed) as f:
        again = json.load(f)
    assert again["images_per_s"] == {} and again["int8_ratio_per_round"] == {}
    assert [r["drop_points"] for r in again["rows"]] == [r["drop_points"] for r in saved["rows"]]
    assert "round by round" not in done.stdout

    on_train = tmp_path / "train.json"  # --split: another split scored, calibrated as before
    done = subprocess.run([sys.executable, STOCK_INT8,
                           "--bias-free", bias_free, "--stock", stock, "--calib-images", "2",
                           "--rounds", "0", "--split", "train", "--out", str(on_train)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(on_train) as f:
        scored = json.load(f)
    assert scored["split"] == "train" and done.stdout.startswith("train ")
    cfg = load_config(os.path.join(stock, "config.yaml"),
                      ["data.num_workers=0", 'data.val_splits=["train"]'])
    dataset, classes = val_set(cfg)
    assert len(dataset) == 8
    folder = os.path.join(stock, "export", "stock_int8")
    assert scored["rows"][1]["train"]["float32_pair"] == pair_val_map(
        cfg, dataset, classes, folder, FLOAT_ONNX, False)

    shutil.rmtree(os.path.join(stock, "export"))  # a split the data lacks: refused, nothing written
    done = subprocess.run([sys.executable, STOCK_INT8,
                           "--bias-free", bias_free, "--stock", stock, "--rounds", "0",
                           "--split", "nosuch"], capture_output=True, text=True)
    assert done.returncode == 2 and "nosuch" in done.stderr
    assert "Traceback" not in done.stderr and not os.path.exists(os.path.join(stock, "export"))


def test_the_stock_heads_can_be_equalized_as_the_bias_free_pairs_are(stock):
    """export_stock_int8(equalize_heads=True): its own folder, the head convs' rows scaled
    by 1 / max |y_c| on the calibration images, and the host part undoing it per channel."""
    from ssd_nobias.export.int8 import head_gains
    from ssd_nobias.export.split import calibration_images
    from ssd_nobias_studies.stock_int8 import export_stock_int8
    from ssd_nobias.runtime.host import HostPart

    cfg, params, folder = stock
    report = export_stock_int8(cfg, params, folder, calib_images=4, progress=False,
                               equalize_heads=True)
    assert report["folder"] == os.path.join(folder, "stock_int8_heads")
    assert report["quantization"].endswith("; heads equalized per channel")
    host = HostPart.load(report["folder"], int8=True)
    gains = head_gains(report["float32"], calibration_images(cfg, 4))
    assert len(host.channel_scales) == 12
    for scale, gain in zip(host.channel_scales, gains):
        np.testing.assert_allclose(scale.reshape(-1), 1 / gain.astype(np.float64), rtol=1e-6)
    assert HostPart.load(report["folder"]).channel_scales is None  # the float32 pair's
    heads = [layer for layer in report["layers"] if layer["layer"][:3] in ("cls", "box")]
    assert len(heads) == 12 and all(np.isfinite(h["sqnr_db"]) for h in heads)


def test_channel_range_used_is_the_median_channels_share_of_the_tensors_range():
    from ssd_nobias.export.split import channel_range_used

    a = np.zeros((1, 3, 2, 2), np.float32)
    a[0, 0, 0, 0], a[0, 1, 1, 1], a[0, 2, 0, 1] = 1, -2, 4  # channel peaks 1, 2, 4
    b = a.copy()
    b[0, 2] = 0  # a second image: the peak over both is what counts
    assert channel_range_used([a, b]) == 0.5
    assert channel_range_used([np.zeros((1, 2, 1, 1))]) == 0.0
