"""NoBiasBatchNorm against a NumPy reference, in every mode order, hybridized or not, in both
implementations: the compiled operator (native) and the one built from MXNet operators (ops)."""
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ssd_nobias import NoBiasBatchNorm, get_norm_layer
from ssd_nobias.model import native
from ssd_nobias.model.norm import IMPL_ENV, choose_impl

EPS = 1e-5


def reference(x, gamma, running_var, train, eps=EPS, relu=False):
    """y and the statistic it used, in float64."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    second_moment = (x.astype(np.float64) ** 2).mean(axis=axes) if train else running_var
    y = gamma.reshape(shape) * x / np.sqrt(second_moment.reshape(shape) + eps)
    return (np.maximum(y, 0) if relu else y), second_moment


IMPLS = pytest.mark.parametrize("impl", ["native", "ops"])


def make_layer(channels=4, hybridize=True, ctx=mx.cpu(), impl="native", **kwargs):
    layer = NoBiasBatchNorm(in_channels=channels, impl=impl, **kwargs)
    layer.initialize(ctx=ctx)
    if hybridize:
        layer.hybridize(static_alloc=True, static_shape=True)
    return layer


def data(shape=(8, 4, 5, 5), mean=5.0, seed=0, dtype="float32"):
    return np.random.RandomState(seed).normal(mean, 1.0, size=shape).astype(dtype)


def train_step(layer, x, trainer):
    with autograd.record():
        y = layer(x)
    y.backward()
    trainer.step(x.shape[0])
    mx.nd.waitall()  # the ops version's statistics are written by a backward operator
    return y


def test_no_beta_and_center_is_an_error():
    layer = NoBiasBatchNorm(in_channels=3)
    assert sorted(p.split("_", 1)[1] for p in layer.collect_params()) == \
        ["gamma", "running_mean", "running_var"]
    with pytest.raises(ValueError, match="no beta"):
        NoBiasBatchNorm(center=True)
    with pytest.raises(ValueError, match="axis 1"):
        NoBiasBatchNorm(axis=3)


@pytest.mark.parametrize("hybridize", [False, True])
@IMPLS
def test_training_forward_matches_reference(hybridize, impl):
    layer = make_layer(hybridize=hybridize, gamma_initializer=mx.init.Constant(1.5), impl=impl)
    x = data()
    with autograd.record():
        y = layer(mx.nd.array(x))
    expected, m2 = reference(x, np.full(4, 1.5), None, train=True)
    np.testing.assert_allclose(y.asnumpy(), expected, rtol=1e-5, atol=1e-6)
    # running_var follows m2 with MXNet's momentum convention: the operator updates it in the
    # forward pass, the ops version in the backward pass
    if impl == "ops":
        y.backward()
        mx.nd.waitall()  # the statistics are written by a backward operator (portable.py)
    np.testing.assert_allclose(layer.running_var.data().asnumpy(), 0.9 * 1 + 0.1 * m2, rtol=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
@IMPLS
def test_inference_forward_is_the_folded_formula(hybridize, impl):
    layer = make_layer(hybridize=hybridize, impl=impl)
    running_var = np.array([0.5, 2.0, 4.0, 9.0], dtype=np.float32)
    gamma = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    layer.running_var.set_data(mx.nd.array(running_var))
    layer.gamma.set_data(mx.nd.array(gamma))
    x = data()
    y = layer(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(y, reference(x, gamma, running_var, train=False)[0], rtol=1e-6)
    np.testing.assert_array_equal(layer.running_var.data().asnumpy(), running_var)


@pytest.mark.parametrize("order", [("train", "eval", "train", "eval"),
                                   ("eval", "train", "eval", "train")])
@IMPLS
def test_hybridized_mode_switch_in_both_orders(order, impl):
    layer = make_layer(impl=impl)
    trainer = gluon.Trainer(layer.collect_params(), "sgd", {"learning_rate": 0.1})
    x = data()
    for mode in order:
        gamma = layer.gamma.data().asnumpy()
        running_var = layer.running_var.data().asnumpy()
        if mode == "train":
            y = train_step(layer, mx.nd.array(x), trainer)
        else:
            y = layer(mx.nd.array(x))
        expected, _ = reference(x, gamma, running_var, train=mode == "train")
        np.testing.assert_allclose(y.asnumpy(), expected, rtol=1e-5, atol=1e-6, err_msg=mode)


@IMPLS
def test_running_mean_stays_bitwise_zero_through_training(impl):
    layer = make_layer(impl=impl)
    trainer = gluon.Trainer(layer.collect_params(), "sgd", {"learning_rate": 0.1})
    for step in range(20):
        train_step(layer, mx.nd.array(data(mean=50.0, seed=step)), trainer)
        layer(mx.nd.array(data(mean=-30.0, seed=step)))
    running_mean = layer.running_mean.data().asnumpy()
    assert running_mean.tobytes() == np.zeros(4, np.float32).tobytes()
    assert layer.running_var.data().asnumpy().min() > 100  # it did learn something


@IMPLS
def test_running_var_converges_to_second_moment(impl):
    layer = make_layer(impl=impl)
    x = data(mean=3.0)
    _, m2 = reference(x, np.ones(4), None, train=True)
    for _ in range(60):
        with autograd.record():
            y = layer(mx.nd.array(x))
        y.backward()
    mx.nd.waitall()
    expected = m2 + 0.9 ** 60 * (1.0 - m2)
    np.testing.assert_allclose(layer.running_var.data().asnumpy(), expected, rtol=1e-5)


@IMPLS
def test_use_global_stats_freezes_statistics_in_training(impl):
    layer = make_layer(use_global_stats=True, impl=impl)
    layer.running_var.set_data(mx.nd.array([1.0, 2.0, 3.0, 4.0]))
    trainer = gluon.Trainer(layer.collect_params(), "sgd", {"learning_rate": 0.1})
    x = data()
    y = train_step(layer, mx.nd.array(x), trainer)
    np.testing.assert_allclose(y.asnumpy(), reference(x, np.ones(4), np.arange(1.0, 5.0),
                                                      train=False)[0], rtol=1e-5)
    np.testing.assert_array_equal(layer.running_var.data().asnumpy(), [1.0, 2.0, 3.0, 4.0])


@IMPLS
def test_scale_false_keeps_gamma_one(impl):
    layer = make_layer(scale=False, impl=impl)
    assert layer.gamma.grad_req == "null"
    layer.gamma.set_data(mx.nd.full(4, 7.0))  # ignored, as PyTorch's affine=False
    x = data()
    with autograd.record():
        y = layer(mx.nd.array(x))
    np.testing.assert_allclose(y.asnumpy(), reference(x, np.ones(4), None, train=True)[0],
                               rtol=1e-5, atol=1e-6)


@IMPLS
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_gradient_matches_finite_differences_in_float64(train, relu, impl):
    shape = (3, 2, 2, 3)
    x = data(shape, mean=0.0, dtype="float64")
    x += np.sign(x) * 0.1  # keep the fused ReLU's kink away from the finite differences
    weights = np.random.RandomState(1).normal(size=shape)
    gamma = np.array([0.7, -1.3])
    running_var = np.array([1.7, 0.4])

    def forward(values):
        return reference(values, gamma, running_var, train, relu=relu)[0]

    def loss(values):
        return float((weights * forward(values)).sum())

    numeric = np.zeros_like(x)
    step = 1e-6
    for index in np.ndindex(shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (loss(up) - loss(down)) / (2 * step)

    layer = NoBiasBatchNorm(in_channels=2, fuse_relu=relu, impl=impl)
    layer.initialize()
    layer.cast("float64")
    layer.gamma.set_data(mx.nd.array(gamma, dtype="float64"))
    layer.running_var.set_data(mx.nd.array(running_var, dtype="float64"))
    xs = mx.nd.array(x, dtype="float64")
    xs.attach_grad()
    with autograd.record(train_mode=train):
        y = layer(xs)
    y.backward(mx.nd.array(weights, dtype="float64"))
    np.testing.assert_allclose(y.asnumpy(), forward(x), rtol=1e-12)
    np.testing.assert_allclose(xs.grad.asnumpy(), numeric, rtol=1e-6, atol=1e-8)
    # d/dgamma of gamma * x * r is x * r, where the ReLU passes
    passes = forward(x) > 0 if relu else np.ones(shape, bool)
    x_r = reference(x, np.ones(2), running_var, train)[0]
    np.testing.assert_allclose(layer.gamma.grad().asnumpy(),
                               (weights * x_r * passes).sum(axis=(0, 2, 3)), rtol=1e-9)


def conv_norm_conv(channels, relu, dtype, impl="native"):
    """conv -> NoBiasBatchNorm -> conv: the norm reads and feeds MKLDNN convolutions."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(channels, 3, padding=1, use_bias=False, in_channels=3),
            NoBiasBatchNorm(in_channels=channels, fuse_relu=relu, impl=impl),
            gluon.nn.Conv2D(4, 3, padding=1, use_bias=False, in_channels=channels))
    mx.random.seed(0)
    net.initialize(mx.init.Xavier())
    net[1].gamma.set_data(mx.nd.array(np.linspace(0.5, 1.5, channels)))
    net.cast(dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def train_pass(net, x, dtype):
    """Output, input gradient, parameter gradients and running_var after one training pass."""
    xs = mx.nd.array(x, dtype=dtype)
    xs.attach_grad()
    with autograd.record():
        y = net(xs)
    y.backward(mx.nd.array(np.cos(np.arange(y.size)).reshape(y.shape), dtype=dtype))
    grads = [p.grad().asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
    mx.nd.waitall()  # the ops version's statistics are written by a backward operator
    return [y.asnumpy(), xs.grad.asnumpy(), *grads, net[1].running_var.data().asnumpy()]


# The suite under SSD_NOBIAS_PLAIN_LAYOUT=1 (another rounding order, README): the operator then
# runs lib_api's plain-NCHW compute only.
PLAIN = os.environ.get(native.PLAIN_LAYOUT_ENV, "0") == "1"


@pytest.mark.skipif(PLAIN, reason="SSD_NOBIAS_PLAIN_LAYOUT=1 turns off the MKLDNN-layout "
                                  "compute this test is about")
@pytest.mark.parametrize("channels", [8, 16, 12])  # MKLDNN blocks 8 and 16, not 12
@pytest.mark.parametrize("relu", [False, True])
def test_mkldnn_blocked_layouts_match_the_plain_computation(channels, relu):
    """float32 activations stay in MKLDNN's blocked layouts; float64 ones are always plain NCHW."""
    x = data(shape=(4, 3, 9, 7), mean=0.5)
    before = native.layout_reads()
    blocked = train_pass(conv_norm_conv(channels, relu, "float32"), x, "float32")
    after = native.layout_reads()
    plain = train_pass(conv_norm_conv(channels, relu, "float64"), x, "float64")
    read = {layout: after[layout] - before[layout] for layout in after}
    if channels % 8 == 0:
        # x forward and backward; dy comes in whichever layout the convolution backward chose
        assert read["nChw8c"] + read["nChw16c"] >= 2, read
    else:
        assert read["plain"] >= 3 and read["reordered"] == 0, read
    for got, want in zip(blocked, plain):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * np.abs(want).max())


@pytest.mark.subprocess
def test_plain_layout_switch_keeps_the_lib_api_compute(tmp_path):
    """SSD_NOBIAS_PLAIN_LAYOUT=1 leaves the operator on lib_api's plain-NCHW compute; same results."""
    x = data(shape=(4, 3, 9, 7), mean=0.5)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import test_norm\n"
        "x = np.load(sys.argv[2] + '/x.npy')\n"
        "out = test_norm.train_pass(test_norm.conv_norm_conv(8, True, 'float32'), x, 'float32')\n"
        "np.savez(sys.argv[2] + '/out.npz', *out)\n"
        "print(sum(test_norm.native.layout_reads().values()))\n")
    env = dict(os.environ, **{native.PLAIN_LAYOUT_ENV: "1"})
    result = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent),
                             str(tmp_path)], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "0"  # the MKLDNN compute never ran
    plain = np.load(tmp_path / "out.npz")
    blocked = train_pass(conv_norm_conv(8, True, "float32"), x, "float32")
    for got, want in zip(blocked, [plain[f"arr_{i}"] for i in range(len(plain.files))]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@IMPLS
def test_gradients_accumulate_with_grad_req_add(impl):
    layer = make_layer(fuse_relu=True, impl=impl)
    layer.gamma.grad_req = "add"
    x = mx.nd.array(data(mean=0.5))
    x.attach_grad(grad_req="add")
    grads = []
    for _ in range(2):
        with autograd.record():
            y = layer(x)
        y.backward()
        grads.append((x.grad.asnumpy().copy(), layer.gamma.grad().asnumpy().copy()))
    for once, twice in zip(*grads):
        assert np.abs(once).max() > 0
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-5, atol=1e-7)


@IMPLS
def test_split_and_load_over_two_contexts(impl):
    ctxs = [mx.cpu(0), mx.cpu(1)]
    layer = make_layer(ctx=ctxs, impl=impl)
    x = data(shape=(8, 4, 3, 3))
    parts = gluon.utils.split_and_load(mx.nd.array(x), ctxs)
    with autograd.record():
        outs = [layer(part) for part in parts]
    autograd.backward(outs)
    mx.nd.waitall()  # the ops version's statistics are written by a backward operator
    # each context normalizes its own shard and keeps its own statistics, as BatchNorm does
    for ctx, part, out in zip(ctxs, np.split(x, 2), outs):
        assert out.context == ctx
        expected, m2 = reference(part, np.ones(4), None, train=True)
        np.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.running_var.data(ctx).asnumpy(), 0.9 + 0.1 * m2,
                                   rtol=1e-6)
        assert not layer.running_mean.data(ctx).asnumpy().any()
    grads = [layer.gamma.grad(ctx).asnumpy() for ctx in ctxs]
    assert np.abs(grads[0] - grads[1]).max() > 0  # per-shard gradients, summed by the trainer


@IMPLS
def test_export_and_symbolblock_imports_round_trip(tmp_path, impl):
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3, in_channels=3, use_bias=False),
            NoBiasBatchNorm(in_channels=4, impl=impl))
    net.initialize()
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x = mx.nd.array(data(shape=(2, 3, 6, 6)))
    train_step(net, x, trainer)
    expected = net(x).asnumpy()
    net.export(str(tmp_path / "layer"))
    saved = mx.nd.load(str(tmp_path / "layer-0000.params"))
    assert any(k.startswith("aux:") and k.endswith("running_mean") for k in saved)
    assert not any("beta" in k for k in saved)
    loaded = gluon.SymbolBlock.imports(str(tmp_path / "layer-symbol.json"), ["data"],
                                       str(tmp_path / "layer-0000.params"))
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
def test_float16_data_on_a_cpu_is_a_clear_error(hybridize):
    layer = make_layer(hybridize=hybridize)
    layer.cast("float16")  # keeps gamma and the statistics float32, as for BatchNorm
    with pytest.raises(mx.base.MXNetError, match="float16 data runs on GPUs only"):
        layer(mx.nd.ones((2, 4, 3, 3), dtype="float16")).wait_to_read()


def test_types_are_those_of_batchnorm():
    """float16 data takes float32 gamma and statistics (GPU); float32/64 data its own type."""
    native.load()
    args = [mx.sym.var(n) for n in ("data", "gamma", "running_mean", "running_var", "is_train")]
    out = mx.sym.nobias_batch_norm(*args)
    for data_type, param_type in (("float16", "float32"), ("float32", "float32"),
                                  ("float64", "float64")):
        # arguments data, gamma, is_train; outputs out, inv_rms; statistics mean, var
        arg_types, out_types, aux_types = out.infer_type(data=data_type)
        assert [t.__name__ for t in arg_types + out_types + aux_types] == \
            [data_type, param_type, param_type, data_type] + [param_type] * 3
    assert [t.__name__ for t in out.infer_type(gamma="float64")[0]] == ["float64"] * 3
    with pytest.raises(mx.base.MXNetError, match="input 1 must be float32"):
        out.infer_type(data="float16", gamma="float16")
    with pytest.raises(mx.base.MXNetError, match="float16 \\(GPU only\\), float32 or float64"):
        out.infer_type(data="int32")


def test_get_norm_layer():
    assert get_norm_layer("nobias") is NoBiasBatchNorm
    assert get_norm_layer("batchnorm") is gluon.nn.BatchNorm
    assert get_norm_layer(NoBiasBatchNorm) is NoBiasBatchNorm
    with pytest.raises(ValueError, match="unknown norm 'groupnorm'"):
        get_norm_layer("groupnorm")


@pytest.mark.parametrize("relu", [False, True])
def test_ops_implementation_matches_the_compiled_operator_between_convolutions(relu):
    """The portable path against the native one in a hybridized conv -> norm -> conv, trained."""
    x = data(shape=(4, 3, 9, 7), mean=0.5)
    native_out = train_pass(conv_norm_conv(8, relu, "float32", "native"), x, "float32")
    ops_out = train_pass(conv_norm_conv(8, relu, "float32", "ops"), x, "float32")
    for got, want in zip(ops_out, native_out):  # y, dx, conv/gamma/conv grads, running_var
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * np.abs(want).max())


class TwoConsumers(gluon.HybridBlock):
    """h = conv(x) feeds the norm and a second branch: h's gradient is a sum of two."""

    def __init__(self, impl):
        super().__init__()
        self.conv = gluon.nn.Conv2D(8, 3, padding=1, use_bias=False, in_channels=3)
        self.norm = NoBiasBatchNorm(in_channels=8, impl=impl)

    def hybrid_forward(self, F, x):
        h = self.conv(x)
        return self.norm(h) + 0.5 * h


def test_a_norm_input_with_two_consumers_gets_both_gradients():
    x = data(shape=(2, 3, 6, 6), mean=0.5)
    grads = {}
    for impl in ("native", "ops"):
        mx.random.seed(0)
        net = TwoConsumers(impl)
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        xs = mx.nd.array(x)
        xs.attach_grad()
        with autograd.record():
            y = net(xs)
        y.backward(mx.nd.array(np.sin(np.arange(y.size)).reshape(y.shape)))
        grads[impl] = xs.grad.asnumpy(), net.conv.weight.grad().asnumpy()
    for got, want in zip(grads["native"], grads["ops"]):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * np.abs(want).max())


def test_auto_takes_the_ops_path_where_the_operator_cannot_run(monkeypatch):
    cpu, gpu = [mx.cpu(0), mx.cpu(1)], [mx.gpu(0), mx.gpu(1)]
    assert choose_impl("auto", cpu, None) == "native"
    assert choose_impl("ops", cpu, None) == "ops"
    with pytest.warns(UserWarning, match="cannot run here .no C\\+\\+ compiler"):
        assert choose_impl("auto", cpu, "no C++ compiler") == "ops"
    # here: a CPU build, or a CUDA build without a GPU
    with pytest.warns(UserWarning, match=r"no GPU compute for gpu\(0\): .*portable"):
        assert choose_impl("auto", gpu, None) == "ops"
    with pytest.raises(native.NativeUnavailable, match="no GPU compute.*model.norm_impl"):
        choose_impl("native", gpu, None)
    monkeypatch.setattr(native, "gpu_error", lambda: None)  # as with mxnet-cu11x and NVRTC
    assert choose_impl("auto", gpu, None) == "native"
    assert choose_impl("native", gpu, None) == "native"
    monkeypatch.setattr(native, "gpu_error", lambda: "NVRTC: cannot load libnvrtc.so.11.2")
    with pytest.warns(UserWarning, match="libnvrtc"):
        assert choose_impl("auto", gpu, None) == "ops"


def test_auto_without_a_buildable_operator_trains_on_the_ops_path(monkeypatch):
    monkeypatch.setattr(native, "try_load", lambda: "g++ was not found")
    with pytest.raises(native.NativeUnavailable, match="g\\+\\+ was not found"):
        NoBiasBatchNorm(in_channels=4, impl="native")
    layer = make_layer(impl="auto")
    x = data()
    with pytest.warns(UserWarning, match="g\\+\\+ was not found"), autograd.record():
        y = layer(mx.nd.array(x))
    assert "nobias_batch_norm" not in layer._cached_graph[1].tojson()
    np.testing.assert_allclose(y.asnumpy(), reference(x, np.ones(4), None, train=True)[0],
                               rtol=1e-5, atol=1e-6)


def test_environment_variable_chooses_the_implementation(monkeypatch):
    monkeypatch.setenv(IMPL_ENV, "ops")
    assert NoBiasBatchNorm(in_channels=4).impl == "ops"
    assert NoBiasBatchNorm(in_channels=4, impl="native").impl == "native"  # explicit wins
    monkeypatch.setenv(IMPL_ENV, "cuda")
    with pytest.raises(ValueError, match="SSD_NOBIAS_IMPL='cuda'"):
        NoBiasBatchNorm(in_channels=4)
    with pytest.raises(ValueError, match="impl 'fast' is not one of auto, native, ops"):
        NoBiasBatchNorm(in_channels=4, impl="fast")


def run_python(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.subprocess
def test_amp_initialized_before_the_operator_loads_is_refused_or_avoided():
    """Loading the library re-creates MXNet's op functions, which would silently undo AMP."""
    out = run_python(
        "import warnings; from mxnet.contrib import amp; amp.init()\n"
        "from ssd_nobias import NoBiasBatchNorm\nfrom ssd_nobias.model import native\n"
        "try:\n"
        "    NoBiasBatchNorm(in_channels=4, impl='native')\n"
        "except native.NativeUnavailable as err:\n"
        "    print('refused:', err)\n"
        "layer = NoBiasBatchNorm(in_channels=4)  # auto: the ops version, which AMP covers\n"
        "print('auto impl error:', layer._native_error is not None)\n")
    assert "refused: mxnet.contrib.amp.init() ran before" in out and "before amp.init()" in out
    assert "auto impl error: True" in out


# On a CPU, MXNet's MKLDNN kernels take no float16: the ops version runs float16 data only
# imperatively here, the native one only hybridized (AMP's symbol pass casts its input).
@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("impl, hybridize", [("native", True), ("ops", False)])
def test_under_amp_float16_data_is_normalized_with_float32_statistics(impl, hybridize):
    out = run_python(
        "import numpy as np, mxnet as mx\n"
        "from mxnet import autograd\n"
        "from ssd_nobias import NoBiasBatchNorm\n"
        "from ssd_nobias.engine.train import amp_fp32_ops\n"
        f"layer = NoBiasBatchNorm(in_channels=4, impl='{impl}')\n"
        "layer.initialize()\n"
        "from mxnet.contrib import amp\n"
        "amp.init(fp32_ops=amp_fp32_ops())\n"
        f"if {hybridize}: layer.hybridize()\n"
        "x = np.random.RandomState(0).normal(2, 1, (8, 4, 5, 5)).astype('float16')\n"
        "with autograd.record():\n"
        "    y = layer(mx.nd.array(x, dtype='float16'))\n"
        "y.backward()\n"
        "mx.nd.waitall()\n"
        "m2 = (x.astype('float64') ** 2).mean(axis=(0, 2, 3))\n"
        "rv = layer.running_var.data().asnumpy()\n"
        "print(y.dtype.__name__, rv.dtype, layer.gamma.grad().dtype.__name__,\n"
        "      np.allclose(rv, 0.9 + 0.1 * m2, rtol=1e-4),\n"
        "      np.allclose(y.asnumpy(), x / np.sqrt(m2.reshape(1, -1, 1, 1)), rtol=1e-3,\n"
        "                  atol=1e-3))\n")
    assert out.split() == ["float32", "float32", "float32", "True", "True"]


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("gpu_compute, data_type", [(True, "float16"), (False, "float32")])
def test_under_amp_the_operator_gets_float16_only_where_it_has_a_gpu_compute(gpu_compute,
                                                                           data_type):
    """AMP runs the convolution in float16; the operator takes that on a GPU, else AMP casts up.
    Checked on the graph's types: a CPU cannot run float16 convolutions."""
    out = run_python(
        "import mxnet as mx\n"
        "from ssd_nobias import NoBiasBatchNorm\nfrom ssd_nobias.model import native\n"
        "from ssd_nobias.engine.train import amp_fp32_ops\n"
        f"if {gpu_compute}: native.gpu_error = lambda: None  # as with mxnet-cu11x on a GPU\n"
        "net = mx.gluon.nn.HybridSequential()\n"
        "net.add(mx.gluon.nn.Conv2D(4, 3, in_channels=3),\n"
        "        NoBiasBatchNorm(in_channels=4, impl='native'))\n"
        "from mxnet.contrib import amp\n"
        "amp.init(fp32_ops=amp_fp32_ops())\n"
        "sym = net(mx.sym.var('data'))\n"
        "args, outs, aux = sym.infer_type(data='float32')\n"
        "print(outs[0].__name__, *[t.__name__ for t in aux])\n")
    assert out.split() == [data_type, "float32", "float32"]
