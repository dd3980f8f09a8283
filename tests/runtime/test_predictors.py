"""Every model file as a predictor: a training checkpoint, a deploy folder, an ONNX model."""
import json
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.model.checkpoint import save_checkpoint
from ssd_nobias.config import load_config
from ssd_nobias.errors import DataError
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias.runtime.predictors import (OnnxPredictor, load_deploy, load_onnx, load_predictor,
                                           load_trained)
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import initialized_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A bias-free model as a checkpoint and as the deploy folder + ONNX model it exports to."""
    base = tmp_path_factory.mktemp("predictors")
    root = make_synthetic(str(base / "data"), train=4, val=2, size=96, seed=1)["root"]
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={root}", f"output_dir={base / 'run'}", "data.num_workers=0"])
    net = initialized_model(cfg, CLASSES, [mx.cpu()])
    net(mx.nd.zeros((1, 3, 300, 300)))  # shapes
    params = save_checkpoint(str(base / "model"), net, None, {"classes": CLASSES})
    export_deploy(cfg, params, str(base / "deploy"), onnx=True)
    onnx_path = str(base / "deploy" / f"{cfg.model.name}.onnx")
    x = mx.nd.array(np.random.RandomState(0).normal(0, 1, (2, 3, 300, 300)))
    return cfg, params, str(base / "deploy"), onnx_path, x


def detections(predictor, x):
    return [a.asnumpy() for a in predictor(x)]


def test_the_three_model_files_predict_alike(model_files):
    cfg, params, deploy_dir, onnx_path, x = model_files
    loaded = {"params": load_predictor(cfg, params_path=params),
              "deploy": load_predictor(cfg, deploy_dir=deploy_dir),
              "onnx": load_predictor(cfg, onnx_path=onnx_path)}
    assert isinstance(loaded["onnx"].predictor, OnnxPredictor)
    assert loaded["onnx"].ctx == [mx.cpu()] and loaded["params"].ctx == [mx.cpu()]
    want_ids, want_scores, want_boxes = detections(loaded["params"].predictor, x)
    assert want_ids.shape == (2, 100, 1) and want_boxes.shape == (2, 100, 4)
    assert (want_ids >= 0).sum() > 10  # a random model still detects something to compare
    for name, model in loaded.items():
        assert model.classes == CLASSES, name
        ids, scores, boxes = detections(model.predictor, x)
        assert ids.shape == want_ids.shape, name
        # NMS may swap near-tied boxes: compare each image's sorted scores, then the best box
        np.testing.assert_allclose(np.sort(scores, axis=1), np.sort(want_scores, axis=1),
                                   atol=1e-4, err_msg=name)
        np.testing.assert_allclose(boxes[:, 0], want_boxes[:, 0], atol=1e-2, err_msg=name)


def test_each_loader_returns_what_it_documents(model_files):
    cfg, params, deploy_dir, onnx_path, _ = model_files
    net, classes = load_trained(cfg, params, [mx.cpu(0), mx.cpu(1)])
    assert classes == CLASSES and net.classes == CLASSES
    assert all(set(p.list_ctx()) == {mx.cpu(0), mx.cpu(1)}
               for p in net.collect_params().values())
    block, classes = load_deploy(deploy_dir, [mx.cpu()])
    assert isinstance(block, mx.gluon.SymbolBlock) and classes == CLASSES
    predictor, classes = load_onnx(onnx_path)
    assert isinstance(predictor, OnnxPredictor) and classes == CLASSES


def test_bad_model_files_are_named(model_files, tmp_path):
    cfg, params, deploy_dir, _, _ = model_files
    with pytest.raises(DataError, match="missing.params' does not exist"):
        load_trained(cfg, str(tmp_path / "missing.params"), [mx.cpu()])
    other = tmp_path / "other.params"
    other.write_bytes(open(params, "rb").read())
    (tmp_path / "other.json").write_text(json.dumps({"classes": ["cat", "dog"]}))
    with pytest.raises(DataError, match=r"other\.params was trained on classes \['cat', 'dog'\]"):
        load_trained(cfg, str(other), [mx.cpu()], classes=CLASSES)  # an evaluation's dataset
    with pytest.raises(DataError, match=r"other\.params does not fit model"):
        load_trained(cfg, str(other), [mx.cpu()])  # the sidecar's 2 classes: other heads
    with pytest.raises(DataError, match=r"model\.params was trained on classes .* has \['a'\]"):
        load_trained(cfg, params, [mx.cpu()], classes=["a"])  # the caller's, when given
    with pytest.raises(DataError, match="should hold one <model>-symbol.json .* found 0"):
        load_deploy(str(tmp_path), [mx.cpu()])
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(deploy_dir):
        if name.endswith(("-symbol.json", "-0000.params")):
            (bare / name).write_bytes(open(os.path.join(deploy_dir, name), "rb").read())
    with pytest.raises(DataError, match=r"bare/preprocess\.json \(written by `ssd-nobias export`\)"):
        load_deploy(str(bare), [mx.cpu()])
    with pytest.raises(ValueError, match="exactly one of"):
        load_predictor(cfg, params_path=params, deploy_dir=deploy_dir)
    with pytest.raises(ValueError, match="exactly one of"):
        load_predictor(cfg)


@pytest.mark.subprocess
@pytest.mark.parametrize("module, other", [("evaluation.evaluate", "export.deploy"),
                                           ("export.deploy", "evaluation.evaluate")])
def test_evaluate_and_export_do_not_import_each_other(module, other):
    code = (f"import sys, ssd_nobias.{module}; "
            f"print('ssd_nobias.{other}' in sys.modules, "
            f"'ssd_nobias.runtime.predictors' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_a_checkpoint_predicts_without_its_config_or_its_dataset(model_files, tmp_path):
    """The sidecar records the config and the classes: no config is given, and the dataset the
    config names is not there (a COCO checkpoint needs no COCO annotations to detect)."""
    from ssd_nobias.engine.train import initialized_model as init
    from ssd_nobias.runtime.predictors import checkpoint_config
    cfg, params, _, _, x = model_files
    gone = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={tmp_path / 'nowhere'}", "data.classes=[classes.txt]"])
    net = init(gone, CLASSES, [mx.cpu()])
    net(mx.nd.zeros((1, 3, 300, 300)))
    saved = save_checkpoint(str(tmp_path / "ckpt"), net, None,
                            {"classes": CLASSES, "config": gone.dump()})
    loaded = load_predictor(params_path=saved)
    assert loaded.classes == CLASSES and loaded.ctx == [mx.cpu()]
    assert checkpoint_config(saved) == gone
    ids, scores, boxes = loaded.predictor(x)
    want = net(x)
    np.testing.assert_allclose(scores.asnumpy(), want[1].asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match=r"model\.params' does not exist"):
        checkpoint_config(str(tmp_path / "model.params"))
    shutil.copy(saved, tmp_path / "model.params")  # the weights alone, no sidecar beside them
    with pytest.raises(DataError, match=r"model\.params has no sidecar recording its config"):
        checkpoint_config(str(tmp_path / "model.params"))
    with open(saved, "r+b") as f:
        f.truncate(1000)  # a partial copy, its sidecar beside it
    with pytest.raises(DataError, match=r"ckpt\.params does not match the CRCs its sidecar"):
        checkpoint_config(saved)


def test_a_training_device_missing_here_predicts_on_the_cpu(model_files):
    cfg, params, deploy, onnx_path, x = model_files
    gpu = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                      [f"data.root={cfg.data.root}", "train.ctx=[gpu0]"])
    if mx.context.num_gpus():
        pytest.skip("this machine has the GPU the config names")
    assert load_predictor(gpu, onnx_path=onnx_path).ctx == [mx.cpu()]  # no device asked
    with pytest.warns(UserWarning, match=r"train\.ctx \['gpu0'\] is not on this machine"):
        loaded = load_predictor(gpu, params_path=params)
    assert loaded.ctx == [mx.cpu()]
    with pytest.warns(UserWarning):
        assert load_predictor(gpu, deploy_dir=deploy).ctx == [mx.cpu()]


def test_device_chooses_where_inference_runs_whatever_the_config_trained_on(model_files):
    import warnings
    from ssd_nobias.errors import ConfigError
    cfg, params, deploy, _, _ = model_files
    gpu = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                      [f"data.root={cfg.data.root}", "train.ctx=[gpu0]"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_predictor(gpu, params_path=params, device="cpu").ctx == [mx.cpu()]
        assert load_predictor(gpu, deploy_dir=deploy, device="cpu0").ctx == [mx.cpu(0)]
    assert not [w for w in caught if "train.ctx" in str(w.message)]  # asked for: no fallback
    if not mx.context.num_gpus():
        with pytest.raises(ConfigError, match=r"'--device' asks for gpu0, but this machine has "
                                              r"0 GPU\(s\) visible to MXNet; use --device cpu"):
            load_predictor(cfg, params_path=params, device="gpu0")
    with pytest.raises(ConfigError, match=r"'--device': 'tpu' is not cpu, cpuN or gpuN"):
        load_predictor(cfg, params_path=params, device="tpu")


def test_a_deploy_graph_loads_and_runs_without_a_warning(alive_model):
    """MXNet's SymbolBlock.imports warns "Cannot decide type" on every load; load_deploy
    declares the input's type instead, and gives the trained model's detections."""
    import warnings

    cfg, params, deploy, _ = alive_model
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 300, 300)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block, classes = load_deploy(deploy, [mx.cpu()])
        ids, scores, boxes = block(x)
    trained = load_predictor(cfg, params_path=params, device="cpu").predictor
    want = trained(x)
    assert classes == CLASSES
    np.testing.assert_allclose(scores.asnumpy(), want[1].asnumpy(), atol=1e-4)
