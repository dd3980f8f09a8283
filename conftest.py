"""Fixtures shared by the test modules."""
import os

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.model.checkpoint import save_checkpoint
from ssd_nobias.config import load_config
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import initialized_model

ROOT = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["circle", "square", "triangle", "star"]
DEMO_CONFIG = os.path.join(ROOT, "configs", "demo_synthetic.yaml")


def make_tiny_data(tmp_path_factory, name: str, train: int, val: int, seed: int) -> str:
    """A synthetic voc_custom set of 96-px images for tiny runs (treat it as read-only)."""
    return make_synthetic(str(tmp_path_factory.mktemp(name) / "data"), train=train, val=val,
                          size=96, seed=seed)["root"]


def tiny_overrides(data: str, out, name: str, **values) -> list:
    """Overrides of the demo config for a tiny run on `data`: batches of 4 images, loading in
    the training process, a one-iteration warmup; `values` change or add keys."""
    base = {"data.root": data, "output_dir": out, "name": name, "data.num_workers": 0,
            "train.batch_size": 4, "train.warmup_iters": 1}
    base.update(values)
    return [f"{k}={v}" for k, v in base.items()]


def save_stock_model(bn_cfg, path: str):
    """A stock-BatchNorm model of `bn_cfg`, untrained but with shifts (random betas and running
    means) in every norm, saved to `path`: what a user exporting a stock checkpoint holds.
    Returns the net."""
    from ssd_nobias.model.ssd import build_model
    net = build_model(bn_cfg, CLASSES)
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    rng = np.random.RandomState(0)
    for name, param in net.collect_params().items():
        if name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, param.shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2, param.shape)))
    net.save_parameters(path)
    return net


@pytest.fixture(scope="session")
def alive_model(tmp_path_factory):
    """An untrained bias-free demo model that still detects plenty, as a checkpoint and its
    deploy folder (+ ONNX): (cfg, params path, deploy folder, ONNX path).

    Its running statistics are those of real activations (at initialization they are 1 and
    every feature map is ~1e-11), and its class scores are spread apart."""
    from ssd_nobias.export.deploy import export_deploy

    base = tmp_path_factory.mktemp("alive")
    root = make_synthetic(str(base / "data"), train=8, val=4, size=96, seed=1)["root"]
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={root}", f"output_dir={base / 'run'}", "data.num_workers=0"])
    net = initialized_model(cfg, CLASSES, [mx.cpu()])
    noise = mx.nd.array(np.random.RandomState(0).normal(0, 1, (2, 3, 300, 300)))
    with mx.autograd.train_mode():
        for _ in range(40):
            net(noise)
    for head in net.class_predictors:
        weight = head.predictor.weight
        weight.set_data(weight.data() * 30)
    params = save_checkpoint(str(base / "model"), net, None,
                             {"classes": CLASSES, "config": cfg.dump()})
    export_deploy(cfg, params, str(base / "deploy"), onnx=True)
    return cfg, params, str(base / "deploy"), str(base / "deploy" / f"{cfg.model.name}.onnx")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    """A 2-epoch demo run on 8 tiny images with a checkpoint every epoch and val at the end:
    its run directory (treat it as read-only)."""
    from ssd_nobias.engine.train import train

    data = make_tiny_data(tmp_path_factory, "tiny_run", train=8, val=2, seed=0)
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(load_config(DEMO_CONFIG, tiny_overrides(
        data, out, "t", **{"train.epochs": 2, "train.val_interval": 2, "train.save_interval": 1,
                           "eval.batch_size": 2})))
    return str(out)


@pytest.fixture(scope="session")
def split_export(alive_model, tmp_path_factory):
    """The alive model's deploy folder with accelerator/ added: float32, INT8 (uint8
    activations) and the signed INT8 variant: (cfg, params, export folder, report)."""
    import shutil

    from ssd_nobias.export.split import export_accelerator

    cfg, params, deploy, _ = alive_model
    folder = str(tmp_path_factory.mktemp("split") / "export")
    shutil.copytree(deploy, folder)
    report = export_accelerator(cfg, params, folder, int8=True, calib_images=4, progress=False,
                                int8_signed=True, evaluate=True)
    return cfg, params, folder, report
