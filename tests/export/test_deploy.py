"""Folding math, the deploy graph a trained model exports to, its parity, and bad input."""
import json
import warnings
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from conftest import save_stock_model

from ssd_nobias.config import load_config
from ssd_nobias.errors import DataError
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
from ssd_nobias.export.deploy import (FoldedConv, ShiftError, export_deploy, fold_conv_norm,
                                      format_report)
from ssd_nobias.model.ssd import ConvNorm, UnitRecipe
from ssd_nobias.model.norm import NoBiasBatchNorm, UncenteredBatchNorm
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script(name, *args):
    """Run scripts/<name> as a user would; the finished process."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("norm", [NoBiasBatchNorm, gluon.nn.BatchNorm, UncenteredBatchNorm])
@pytest.mark.parametrize("weights, activation", [("plain", "relu"), ("centered", "relu"),
                                                 ("dc_positive", "leaky")])
@pytest.mark.parametrize("in_ch, out_ch, kernel, stride, groups", [
    (6, 8, 1, 1, 1), (6, 8, 3, 2, 1), (8, 8, 3, 1, 8), (6, 4, 3, 1, 2)])
def test_folded_conv_equals_conv_norm_in_inference(norm, weights, activation, in_ch, out_ch,
                                                   kernel, stride, groups):
    mx.random.seed(0)
    pair = ConvNorm(in_ch, out_ch, kernel, stride, UnitRecipe(norm, weights, activation, 0.2),
                    groups=groups)
    pair.initialize(mx.init.Normal(0.5))
    rng = np.random.RandomState(0)
    pair.norm.gamma.set_data(mx.nd.array(rng.uniform(-2, 2, out_ch)))
    pair.norm.running_var.set_data(mx.nd.array(rng.uniform(0.01, 5, out_ch)))
    if norm is not NoBiasBatchNorm:  # stock BN: a mean (and a shift), folded into a bias
        pair.norm.running_mean.set_data(mx.nd.array(rng.normal(0, 1, out_ch)))
    if norm is gluon.nn.BatchNorm:
        pair.norm.beta.set_data(mx.nd.array(rng.normal(0, 1, out_ch)))
    x = mx.nd.array(rng.normal(0, 1, (2, in_ch, 9, 9)))
    with autograd.predict_mode():
        want = pair(x).asnumpy()
    weight, bias = fold_conv_norm(pair)
    folded = FoldedConv(pair, weight, bias)
    np.testing.assert_allclose(folded(x).asnumpy(), want, rtol=1e-5, atol=1e-5)
    names = list(folded.collect_params())
    if norm is NoBiasBatchNorm:
        assert bias is None and not [n for n in names if n.endswith("bias")]
    else:
        assert np.abs(bias).max() > 0.1 and [n for n in names if n.endswith("bias")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bias-free model trained a few iterations on synthetic data, and its config."""
    base = tmp_path_factory.mktemp("export")
    root = make_synthetic(str(base / "data"), train=8, val=4, size=96, seed=1)["root"]
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={root}", f"output_dir={base / 'run'}", "name=tiny", "data.num_workers=0",
        "train.batch_size=4", "train.base_batch_size=4", "train.epochs=1",
        "train.warmup_iters=1", "train.val_interval=1", "eval.batch_size=4"])
    train(cfg)  # lr 0.05 at batch 4: features that outweigh the head biases (a wrong fold shows)
    return cfg, str(base / "run" / "tiny-last.params"), base


def test_deploy_graph_has_no_norm_and_no_bias_where_none_was_asked(trained):
    cfg, params, base = trained
    out = str(base / "deploy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_deploy(cfg, params, out)
    assert not [w for w in caught if "Cannot decide type" in str(w.message)]  # MXNet's noise
    name = cfg.model.name
    with open(os.path.join(out, f"{name}-symbol.json")) as f:
        ops = [n["op"] for n in json.load(f)["nodes"]]
    assert "BatchNorm" not in ops and "nobias_batch_norm" not in ops
    assert ops.count("Convolution") == 47 and "_contrib_box_nms" in ops
    arrays = mx.nd.load(os.path.join(out, f"{name}-0000.params"))
    assert not [k for k in arrays if "running" in k or "beta" in k or "gamma" in k]
    biases = [k for k in arrays if k.endswith("bias")]
    assert len(biases) == 12 and all("predictor" in k for k in biases)  # only the heads
    assert report["bias_free_layers"] == 35
    assert report["parity"]["class_logits"] <= 1e-4
    assert report["parity"]["box_offsets"] <= 1e-4
    # the console gets the count and the biased layers by name; the table only when asked
    short, table = format_report(report).splitlines(), format_report(report, layers=True)
    heads = [r["name"] for r in report["layers"] if not r["bias_free"]]
    assert short[0] == (f"35 of 47 convolutions have no bias; with a bias: {', '.join(heads[:3])}"
                        f" and 9 more (--layers lists every one)") and len(short) == 2
    assert len(table.splitlines()) == 1 + 47 + 2 and "YES" in table
    with open(os.path.join(out, "preprocess.json")) as f:
        pre = json.load(f)
    assert pre["shape"] == [1, 3, 300, 300] and pre["mean"] == list(cfg.data.mean)
    assert pre["classes"] == ["circle", "square", "triangle", "star"]


def test_an_export_carries_its_config_so_eval_needs_none(trained, tmp_path):
    from ssd_nobias import cli
    from ssd_nobias.commands import evaluate as eval_command

    cfg, params, base = trained
    out = tmp_path / "export"
    export_deploy(cfg, params, str(out))
    assert load_config(str(out / "config.yaml")).dump() == cfg.dump()
    assert cli.run(eval_command.main, ["--deploy", str(out), "--out", str(tmp_path / "e")]) == 0
    with open(tmp_path / "e" / "eval.json") as f:
        report = json.load(f)
    assert report["num_images"] == 4 and report["provenance"]["model"]["kind"] == "deploy"
    (out / "config.yaml").unlink()  # an export from before: --config is asked for, by name
    assert cli.run(eval_command.main, ["--deploy", str(out)]) == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_deploy_graph_loads_without_project_code_and_matches(trained):
    cfg, params, base = trained
    out = str(base / "deploy2")
    export_deploy(cfg, params, out)
    code = (f"import mxnet as mx, numpy as np, sys; p = {out + '/' + cfg.model.name!r}; "
            "net = mx.gluon.SymbolBlock.imports(p + '-symbol.json', ['data'], p + '-0000.params');"
            "ids, scores, boxes = net(mx.nd.ones((1, 3, 300, 300)));"
            "assert 'ssd_nobias' not in sys.modules; print(scores.shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 100, 1)"
    trained_map = evaluate_checkpoint(cfg, params, str(base / "e1"), progress=False)
    deploy_map = evaluate_checkpoint(cfg, None, str(base / "e2"), progress=False,
                                     deploy_dir=out)
    assert deploy_map.value == pytest.approx(trained_map.value, abs=1e-3)


@pytest.mark.slow
def test_stock_batchnorm_folds_into_conv_with_bias(trained, tmp_path):
    cfg, _, base = trained
    bn_cfg = load_config(None, [f"{k}={v}" for k, v in (
        ("model.name", cfg.model.name), ("model.norm", "batchnorm"), ("data.dataset", "voc_custom"),
        ("data.root", cfg.data.root), ("data.train_splits", "[train]"),
        ("data.val_splits", "[val]"), ("data.classes", "[classes.txt]"),
        ("output_dir", str(tmp_path)))])
    params = str(tmp_path / "bn.params")
    save_stock_model(bn_cfg, params)
    report = export_deploy(bn_cfg, params, str(tmp_path / "deploy"))
    assert report["bias_free_layers"] == 0
    assert report["parity"]["class_logits"] <= 1e-4 and report["parity"]["box_offsets"] <= 1e-4

    # The seed user's case: stock-BN params, a bias-free deploy asked for.
    with pytest.raises(ShiftError, match=r"35 norm layers .* features\.conv0\.norm 0\.\d+"):
        export_deploy(cfg, params, str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused")


def test_bad_input_is_named(trained, tmp_path):
    cfg, params, base = trained
    with pytest.raises(DataError, match="does not exist"):
        export_deploy(cfg, str(tmp_path / "missing.params"), str(tmp_path / "out"))
    wrong = load_config(None, [f"{k}={v}" for k, v in (
        ("model.name", "ssd_300_mobilenet0.5_custom"), ("data.dataset", "voc_custom"),
        ("data.root", cfg.data.root), ("data.train_splits", "[train]"),
        ("data.val_splits", "[val]"), ("data.classes", "[classes.txt]"))])
    with pytest.raises(DataError, match="does not fit model ssd_300_mobilenet0.5_custom"):
        export_deploy(wrong, params, str(tmp_path / "out"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        export_deploy(cfg, params, str(tmp_path / "file"))
    truncated = tmp_path / "cut.params"
    truncated.write_bytes(open(params, "rb").read()[:1000])
    with pytest.raises(DataError, match="cut.params"):
        export_deploy(cfg, str(truncated), str(tmp_path / "out"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_scripts_export_then_evaluate_the_deploy_graph(trained):
    cfg, params, base = trained
    config = os.path.join(cfg.output_dir, "config.yaml")
    out = str(base / "deploy3")
    done = script("export_ssd.py", "--config", config, "--params", params, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "35 of 47 convolutions have no bias" in done.stdout
    done = script("eval_ssd.py", "--config", config, "--deploy", out, "--out", str(base / "e3"))
    assert done.returncode == 0, done.stderr
    assert "VOC07 mAP" in done.stdout
    done = script("eval_ssd.py", "--config", config, "--deploy", str(base))
    assert done.returncode == 2 and "symbol.json" in done.stderr


def test_a_wrong_fold_fails_parity_and_says_by_how_much(trained, tmp_path, monkeypatch):
    import ssd_nobias.export.deploy as export
    cfg, params, _ = trained
    real = export.fold_conv_norm

    def off_by_one_percent(pair):
        weight, bias = real(pair)
        return weight * 1.01, bias

    monkeypatch.setattr(export, "fold_conv_norm", off_by_one_percent)
    with pytest.raises(export.ParityError,
                       match=r"by 0\.\d+ of their magnitude \(allowed 0\.0001\)"):
        export_deploy(cfg, params, str(tmp_path / "bad"))
    with open(tmp_path / "bad" / "export_report.json") as f:
        assert json.load(f)["parity"]["class_logits"] > 1e-3


@pytest.mark.slow
def test_onnx_export_has_no_norm_no_bias_where_asked_and_same_map(trained):
    cfg, params, base = trained
    out = str(base / "onnx")
    report = export_deploy(cfg, params, out, onnx=True)
    check = report["onnx"]
    assert check["file"] == os.path.join(out, cfg.model.name + ".onnx")
    assert check["batchnorm_nodes"] == 0 and check["bias_differs_from_deploy"] == []
    assert (check["conv_nodes"], check["conv_nodes_without_bias"]) == (47, 35)
    assert check["parity"]["class_logits"] <= 1e-4 and check["parity"]["box_offsets"] <= 1e-4
    import onnx
    model = onnx.load(check["file"])
    assert [o.name for o in model.graph.output] == ["ids", "scores", "bboxes"]
    assert "NonMaxSuppression" in {n.op_type for n in model.graph.node}
    import onnxruntime as ort
    plain = ort.InferenceSession(check["file"])  # all optimizations on: what a user writes
    ids, scores, boxes = plain.run(None, {"data": np.zeros((2, 3, 300, 300), np.float32)})
    assert (ids.shape, scores.shape, boxes.shape) == ((2, 100, 1), (2, 100, 1), (2, 100, 4))
    trained_map = evaluate_checkpoint(cfg, params, str(base / "o1"), progress=False)
    onnx_map = evaluate_checkpoint(cfg, None, str(base / "o2"), progress=False,
                                   onnx_path=check["file"])
    assert onnx_map.value == pytest.approx(trained_map.value, abs=1e-3)


def test_onnx_with_a_wrong_weight_fails_its_check(trained, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import ssd_nobias.export.onnx as onnx_model
    cfg, params, _ = trained
    real = onnx_model.export_onnx

    def scaled_first_conv(prefix, path, shape):
        cut = real(prefix, path, shape)
        model = onnx.load(path)
        weight = next(n.input[1] for n in model.graph.node if n.op_type == "Conv")
        init = next(i for i in model.graph.initializer if i.name == weight)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.05, weight))
        onnx.save(model, path)
        return cut

    monkeypatch.setattr(onnx_model, "export_onnx", scaled_first_conv)
    from ssd_nobias.export.deploy import ParityError
    with pytest.raises(ParityError, match=r"ONNX model .* fails its checks: raw outputs differ"):
        export_deploy(cfg, params, str(tmp_path / "bad"), onnx=True)


@pytest.mark.slow
@pytest.mark.subprocess
def test_scripts_export_onnx_then_evaluate_it(trained):
    cfg, params, base = trained
    config = os.path.join(cfg.output_dir, "config.yaml")
    out = str(base / "onnx2")
    done = script("export_ssd.py", "--params", params, "--out", out, "--onnx")
    assert done.returncode == 2 and "--formats onnx" in done.stderr  # eval's form, redirected
    # no --config: the checkpoint's sidecar holds it; options and overrides in any order
    done = script("export_ssd.py", "--params", params, "data.num_workers=0", "--out", out,
                  "--formats", "onnx", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "ONNX: 35 of 47 Conv nodes without bias, 0 BatchNormalization nodes" in done.stdout
    model = os.path.join(out, cfg.model.name + ".onnx")
    done = script("eval_ssd.py", "--config", config, "--onnx", model, "--out", str(base / "o3"))
    assert done.returncode == 0, done.stderr
    assert "VOC07 mAP" in done.stdout
    done = script("eval_ssd.py", "--config", config, "--onnx", str(base / "none.onnx"))
    assert done.returncode == 2 and "none.onnx" in done.stderr


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("options", [
    ("model.activation=leaky", "model.heads_bias=false", "data.normalize=per_image"),
    ("model.conv_weights=plain", "model.depthwise_weights=plain", "model.activation=relu")])
def test_every_recipe_option_exports_exactly_and_audits_bias_free(trained, tmp_path, options):
    """Leaky activations without any head bias on per-image normalized inputs, and the recipe's
    reparametrizations off: the deploy graph and ONNX model fold exactly, carry no BatchNorm,
    and give the trained mAP; preprocess.json says how inputs are normalized."""
    from ssd_nobias.data.preprocess import Preprocess

    cfg, _, base = trained
    opts = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={cfg.data.root}", f"output_dir={tmp_path / 'run'}", "name=opt",
        "data.num_workers=0", "train.batch_size=4", "train.epochs=1", "train.warmup_iters=1",
        "train.val_interval=1", "eval.batch_size=4", *options])
    train(opts)
    params, out = str(tmp_path / "run" / "opt-last.params"), str(tmp_path / "deploy")
    report = export_deploy(opts, params, out, onnx=True)
    assert max(report["parity"]["class_logits"], report["parity"]["box_offsets"]) <= 1e-4
    weights = {r["name"].split(".")[-2]: r["weights"] for r in report["layers"]}
    want = ("plain", "plain") if "model.conv_weights=plain" in options \
        else ("centered", "dc_positive")
    assert (weights["pw3"], weights["dw3"]) == want
    heads_bias = "model.heads_bias=false" not in options
    assert report["bias_free_layers"] == (35 if heads_bias else 47)
    assert report["onnx"]["batchnorm_nodes"] == 0
    per_image = "data.normalize=per_image" in options
    assert Preprocess.load(out).per_image == per_image
    assert report["onnx"]["conv_nodes_without_bias"] == report["bias_free_layers"]
    with open(os.path.join(out, f"{opts.model.name}-symbol.json")) as f:
        ops = {n["op"] for n in json.load(f)["nodes"]}
    assert ("LeakyReLU" in ops) == ("model.activation=leaky" in options)
    assert not ops & {"BatchNorm", "nobias_batch_norm"}
    prefix = os.path.join(out, opts.model.name)
    done = script("audit_params.py", "--params", prefix + "-0000.params", "--symbol",
                  prefix + "-symbol.json", "--expect-bias-free",
                  "*features*" if heads_bias else "*")
    assert done.returncode == 0, done.stdout
    trained_map = evaluate_checkpoint(opts, params, str(tmp_path / "e1"), progress=False)
    for where in ({"deploy_dir": out}, {"onnx_path": prefix + ".onnx"}):
        got = evaluate_checkpoint(opts, None, str(tmp_path / "e2"), progress=False, **where)
        assert got.value == pytest.approx(trained_map.value, abs=1e-3)
