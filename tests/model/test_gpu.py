"""On GPUs: NoBiasBatchNorm against the CPU operator, two GPUs, AMP, and the export of a model
trained on a GPU. Skipped where MXNet sees no GPU; `make test-gpu` runs this file alone.

Nothing here has been run by this project yet: its machines have no GPU (README, "GPUs").
"""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ssd_nobias import NoBiasBatchNorm
from ssd_nobias.model import native
from ssd_nobias.config import load_config
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPUS = mx.context.num_gpus()
pytestmark = pytest.mark.skipif(GPUS == 0, reason="no GPU (mx.context.num_gpus() is 0): these "
                                                  "checks need an MXNet CUDA build and a GPU")


def conv_norm_step(ctx, impl, x):
    """One training pass of conv -> NoBiasBatchNorm -> conv on ctx: outputs, grads, stats."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(8, 3, padding=1, use_bias=False, in_channels=3),
            NoBiasBatchNorm(in_channels=8, fuse_relu=True, impl=impl),
            gluon.nn.Conv2D(4, 3, padding=1, use_bias=False, in_channels=8))
    mx.random.seed(0)
    net.initialize(mx.init.Xavier(), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    xs = mx.nd.array(x, ctx=ctx)
    xs.attach_grad()
    with autograd.record():
        y = net(xs)
    y.backward(mx.nd.array(np.cos(np.arange(y.size)).reshape(y.shape), ctx=ctx))
    mx.nd.waitall()
    grads = [p.grad(ctx).asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
    norm = net[1]
    return [y.asnumpy(), xs.grad.asnumpy(), *grads, norm.running_var.data(ctx).asnumpy()], \
        norm.running_mean.data(ctx).asnumpy()


def test_the_gpu_compute_is_available():
    assert native.gpu_error() is None


@pytest.mark.parametrize("impl", ["native", "ops"])
def test_gpu_layer_matches_the_cpu_operator(impl):
    x = np.random.RandomState(0).normal(0.5, 1, (4, 3, 9, 7)).astype("float32")
    want, _ = conv_norm_step(mx.cpu(), "native", x)
    got, running_mean = conv_norm_step(mx.gpu(0), impl, x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * np.abs(w).max())
    assert running_mean.tobytes() == np.zeros(8, np.float32).tobytes()


def test_gpu_operator_matches_the_cpu_one_in_every_mode():
    """Forward and backward, training and inference, float32 and float64, fused ReLU."""
    native.load()
    rng = np.random.RandomState(0)
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-12)):
        for train_flag, relu in ((1, 0), (1, 1), (0, 1)):
            x = rng.normal(0.3, 1.5, (3, 5, 33, 35)).astype(dtype)
            dy = rng.normal(0, 1, x.shape).astype(dtype)
            params = [rng.uniform(0.5, 2, 5), np.zeros(5), rng.uniform(0.5, 2, 5),
                      np.array([train_flag])]
            results = []
            for ctx in (mx.cpu(), mx.gpu(0)):
                xs, gamma, mean, var, flag = [mx.nd.array(a, ctx=ctx, dtype=dtype)
                                              for a in [x] + params]
                xs.attach_grad()
                gamma.attach_grad()
                with autograd.record():
                    y, inv_rms = mx.nd.nobias_batch_norm(xs, gamma, mean, var, flag, relu=relu)
                y.backward(mx.nd.array(dy, ctx=ctx, dtype=dtype))
                results.append([a.asnumpy() for a in (y, inv_rms, var, xs.grad, gamma.grad)])
                assert mean.asnumpy().tobytes() == np.zeros(5, dtype).tobytes()
            for got, want in zip(results[1], results[0]):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def test_gpu_float16_data_with_float32_statistics():
    x = np.random.RandomState(0).normal(0.5, 1, (4, 6, 17, 17))
    layer = NoBiasBatchNorm(in_channels=6, impl="native")
    layer.initialize(ctx=mx.gpu(0))
    layer.cast("float16")
    layer.hybridize(static_alloc=True)
    with autograd.record():
        y = layer(mx.nd.array(x, ctx=mx.gpu(0), dtype="float16"))
    y.backward()
    mx.nd.waitall()
    m2 = (x ** 2).mean(axis=(0, 2, 3))
    assert y.dtype == np.float16 and layer.running_var.data(mx.gpu(0)).dtype == np.float32
    np.testing.assert_allclose(layer.running_var.data(mx.gpu(0)).asnumpy(), 0.9 + 0.1 * m2,
                               rtol=1e-3)
    np.testing.assert_allclose(y.asnumpy(), x / np.sqrt(m2 + 1e-5).reshape(1, -1, 1, 1),
                               rtol=3e-3, atol=3e-3)


def test_gpu_gradients_accumulate_with_grad_req_add():
    layer = NoBiasBatchNorm(in_channels=4, impl="native")
    layer.initialize(ctx=mx.gpu(0))
    layer.hybridize(static_alloc=True, static_shape=True)
    layer.collect_params().setattr("grad_req", "add")
    x = mx.nd.array(np.random.RandomState(0).normal(1, 1, (2, 4, 5, 5)), ctx=mx.gpu(0))
    x.attach_grad(grad_req="add")
    grads = []
    for _ in range(2):
        with autograd.record():
            y = layer(x)
        y.backward(mx.nd.ones_like(y) * mx.nd.array(np.arange(y.size).reshape(y.shape) % 7,
                                                    ctx=mx.gpu(0)))
        grads.append((x.grad.asnumpy().copy(), layer.gamma.grad(mx.gpu(0)).asnumpy().copy()))
    for once, twice in zip(*grads):
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_synthetic(str(tmp_path_factory.mktemp("gpu") / "data"), train=16, val=8,
                          size=96, seed=1)["root"]


def tiny_config(root, out, *overrides):
    return load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={root}", f"output_dir={out}", "name=tiny", "data.num_workers=0",
        "train.batch_size=8", "train.epochs=1", "train.warmup_iters=1", "train.val_interval=1",
        "eval.batch_size=8", *overrides])


@pytest.mark.skipif(GPUS < 2, reason="needs two GPUs")
def test_two_gpus_train_with_the_device_kvstore(data_root, tmp_path):
    result = train(tiny_config(data_root, tmp_path / "run", "train.ctx=[gpu0,gpu1]",
                               "train.kvstore=device"))
    assert result is not None and 0 <= result.value <= 1


def test_amp_trains_float16_on_a_gpu(data_root, tmp_path):
    result = train(tiny_config(data_root, tmp_path / "run", "train.ctx=[gpu0]",
                               "train.amp=true"))
    assert result is not None and 0 <= result.value <= 1


def test_a_gpu_trained_model_exports_bias_free(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "run", "train.ctx=[gpu0]")
    train(cfg)
    report = export_deploy(cfg, str(tmp_path / "run" / "tiny-last.params"),
                           str(tmp_path / "deploy"), onnx=True)
    assert report["bias_free_layers"] == 35
    assert max(report["parity"]["class_logits"], report["parity"]["box_offsets"]) <= 1e-4
