"""The bias-free MobileNet-SSD builder: shapes, norm placement, anchors, export, bad input."""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.mobilenet import MobileNet
from mxnet import autograd, gluon

from ssd_nobias import MODEL_NAMES, NoBiasBatchNorm, bias_report, get_model
from ssd_nobias.model.ssd import layer_names, ssd_anchors


def norms(net):
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, gluon.nn.BatchNorm) else None)
    return found


def is_stock(block):
    return isinstance(block, gluon.nn.BatchNorm) and not isinstance(block, NoBiasBatchNorm)


def build(name="ssd_300_mobilenet0.25_voc", **kwargs):
    net = get_model(name, **kwargs)
    net.initialize()
    return net


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_runs_in_train_and_eval_mode(name):
    classes = ["cat", "dog", "kite"] if name.endswith("custom") else None
    net = build(name, classes=classes)
    size = int(name.split("_")[1])
    x = mx.nd.random.uniform(shape=(1, 3, size, size))
    num_classes = len(net.classes)
    with autograd.train_mode():
        cls_preds, box_preds, anchors = net(x)
    num_anchors = anchors.shape[1]
    assert cls_preds.shape == (1, num_anchors, num_classes + 1)
    assert box_preds.shape == (1, num_anchors, 4)
    ids, scores, boxes = net(x)
    assert ids.shape == scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
    assert {"voc": 20, "coco": 80, "custom": 3}[name.rsplit("_", 1)[1]] == num_classes
    found = norms(net)
    assert len(found) == len(layer_names()) and not any(is_stock(b) for b in found)


def test_tree_of_gluon_blocks_reaches_every_norm_base_and_extras():
    net = get_model("ssd_300_mobilenet1.0_voc")
    kinds = set()
    net.apply(lambda block: kinds.add(type(block).__name__))
    assert "SymbolBlock" not in kinds and "FeatureExpander" not in kinds
    names = [name for name, _ in net.features.pairs()]
    assert names == layer_names() and names[-1] == "extra4_conv"
    assert all(isinstance(block.norm, NoBiasBatchNorm) for _, block in net.features.pairs())


def test_bias_free_globs_choose_layers():
    net = get_model("ssd_300_mobilenet0.25_voc", bias_free=("pw*", "extra?_conv"))
    chosen = {name for name, block in net.features.pairs()
              if isinstance(block.norm, NoBiasBatchNorm)}
    assert chosen == {f"pw{i}" for i in range(1, 14)} | {f"extra{i}_conv" for i in range(1, 5)}
    others = [block.norm for name, block in net.features.pairs() if name not in chosen]
    assert others and all(is_stock(norm) for norm in others)


def test_batchnorm_baseline_has_same_architecture_and_stock_bn():
    nobias, stock = build(norm="nobias"), build(norm="batchnorm")
    assert not any(isinstance(b, NoBiasBatchNorm) for b in norms(stock))
    assert [n for n, _ in stock.features.pairs()] == [n for n, _ in nobias.features.pairs()]
    x = mx.nd.random.uniform(shape=(1, 3, 300, 300))
    stock_out, nobias_out = stock.features(x), nobias.features(x)
    assert [o.shape for o in stock_out] == [o.shape for o in nobias_out]
    assert [o.shape[2] for o in stock_out] == [19, 10, 5, 3, 2, 1]
    # both end every pair in a ReLU (fused into NoBiasBatchNorm, an Activation after stock BN)
    for out in stock_out + nobias_out:
        assert out.min().asscalar() == 0.0 and out.max().asscalar() > 0


def recipes(net):
    return {name: (block.conv.mode, block.activation) for name, block in net.features.pairs()}


def test_bias_free_units_get_the_recipe_and_stock_units_stay_gluoncv():
    bias_free = recipes(get_model("ssd_300_mobilenet0.25_voc"))
    assert {v for k, v in bias_free.items() if k.startswith("dw")} == {("dc_positive", "relu")}
    assert {v for k, v in bias_free.items() if not k.startswith("dw")} == {("centered", "relu")}
    stock = recipes(get_model("ssd_300_mobilenet0.25_voc", norm="batchnorm"))
    assert set(stock.values()) == {("plain", "relu")}
    mixed = get_model("ssd_300_mobilenet0.25_voc", bias_free=("pw*",))
    assert {name: mode for name, (mode, _) in recipes(mixed).items()} == {
        name: "centered" if name.startswith("pw") else "plain" for name in layer_names()}
    leaky = get_model("ssd_300_mobilenet0.25_voc", activation="leaky", leaky_slope=0.2,
                      conv_weights="plain")
    assert {v for k, v in recipes(leaky).items() if k.startswith("pw")} == {("plain", "leaky")}
    assert not leaky.features.pw1.norm.fuse_relu and leaky.features.pw1.slope == 0.2


@pytest.mark.parametrize("kwargs, message", [
    ({"conv_weights": "zero"}, "conv_weights 'zero' is not one of plain, centered"),
    ({"depthwise_weights": "flip"}, "depthwise_weights 'flip'"),
    ({"activation": "tlu"}, "activation 'tlu' is not one of relu, leaky"),
    ({"leaky_slope": -1.0}, "leaky_slope must be positive"),
    ({"norm_impl": "cuda"}, "impl 'cuda' is not one of auto, native, ops")])
def test_bad_recipe_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_model("ssd_300_mobilenet0.25_voc", **kwargs)


def test_leaky_units_keep_negative_responses():
    net = build(activation="leaky")
    x = mx.nd.random.uniform(shape=(1, 3, 300, 300))
    out = net.features(x)[0]
    assert out.min().asscalar() < 0 < out.max().asscalar()


def test_bias_report_and_heads_bias():
    report = bias_report(build())
    pairs = [r for r in report if r.name.startswith("features.")]
    heads = [r for r in report if "predictors" in r.name]
    assert len(pairs) == len(layer_names()) and len(heads) == 12
    assert all(r.bias_free and r.max_abs_bias == 0.0 for r in pairs)
    assert not any(r.bias_free for r in heads)
    no_heads = bias_report(build(heads_bias=False))
    assert all(r.bias_free and r.max_abs_bias == 0.0 for r in no_heads)
    stock = bias_report(build(norm="batchnorm"))
    assert not any(r.bias_free for r in stock if r.name.startswith("features."))


def test_stock_bn_report_measures_the_shift_it_would_fold():
    net = build(norm="batchnorm")
    block = net.features.pw3
    block.norm.running_mean.set_data(mx.nd.full(block.norm.running_mean.shape, 2.0))
    row = next(r for r in bias_report(net) if r.name == "features.pw3")
    assert row.max_abs_bias == pytest.approx(2.0 / np.sqrt(1 + 1e-5), rel=1e-6)


@pytest.mark.parametrize("name", ["ssd_300_mobilenet1.0_voc", "ssd_300_mobilenet0.25_coco",
                                  "ssd_512_mobilenet1.0_voc"])
def test_anchor_centres_cover_the_whole_image(name):
    net = build(name)
    size = int(name.split("_")[1])
    x = mx.nd.zeros((1, 3, size, size))
    features = net.features(x)
    for feature, generator in zip(features, net.anchor_generators):
        anchors = generator(feature).reshape((-1, 4)).asnumpy()
        cx, cy = anchors[:, 0], anchors[:, 1]
        cells = feature.shape[2]
        for centres in (cx, cy):
            # the grid of centres is centred on the image and reaches its last cell
            assert abs(centres.mean() - size / 2) <= 0.05 * size, (cells, centres.mean())
            assert centres.max() >= size * (1 - 1 / cells), (cells, centres.max())


def test_export_round_trip_gives_same_detections(tmp_path):
    net = build()
    x = mx.nd.random.uniform(shape=(2, 3, 300, 300))
    with autograd.train_mode():  # a forward in training mode moves running_var away from 1
        net(x)
    net.hybridize()
    expected = [o.asnumpy() for o in net(x)]
    net.export(str(tmp_path / "ssd"))
    loaded = gluon.SymbolBlock.imports(str(tmp_path / "ssd-symbol.json"), ["data"],
                                       str(tmp_path / "ssd-0000.params"))
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_pretrained_base_loads_by_name(tmp_path):
    zoo = MobileNet(0.25)
    zoo.initialize(mx.init.Normal(0.5))
    zoo(mx.nd.zeros((1, 3, 224, 224)))
    path = tmp_path / "mobilenet0.25.params"
    zoo.save_parameters(str(path))
    net = get_model("ssd_300_mobilenet0.25_voc", pretrained_base=path,
                    bias_free=("dw*",))  # pw*, conv0: stock BN, which takes all four arrays
    saved = mx.nd.load(str(path))
    np.testing.assert_array_equal(net.features.conv0.conv.weight.data().asnumpy(),
                                  saved["features.0.weight"].asnumpy())
    np.testing.assert_array_equal(net.features.pw13.norm.running_mean.data().asnumpy(),
                                  saved[f"features.{6 * 13 + 1}.running_mean"].asnumpy())
    np.testing.assert_array_equal(net.features.dw13.norm.gamma.data().asnumpy(),
                                  saved[f"features.{6 * 13 - 2}.gamma"].asnumpy())
    assert not net.features.dw13.norm.running_mean.data().asnumpy().any()
    # its running second moment: the pretrained E[x^2] = var + mean^2
    mean, var = (saved[f"features.{6 * 13 - 2}.{k}"].asnumpy() for k in ("running_mean",
                                                                          "running_var"))
    np.testing.assert_allclose(net.features.dw13.norm.running_var.data().asnumpy(),
                               var + mean * mean, rtol=1e-6)
    # a centered bias-free conv keeps the pretrained weight and computes with its centred form
    centered = get_model("ssd_300_mobilenet0.25_voc", pretrained_base=path)
    pretrained = saved[f"features.{6 * 12}.weight"].asnumpy()  # pw12
    np.testing.assert_array_equal(centered.features.pw12.conv.weight.data().asnumpy(), pretrained)
    np.testing.assert_allclose(centered.features.pw12.conv.deploy_weight().asnumpy(),
                               pretrained - pretrained.mean(axis=(1, 2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'ssd_300_resnet50_voc'"):
        get_model("ssd_300_resnet50_voc")
    with pytest.raises(ValueError, match="non-empty `classes`"):
        get_model("ssd_300_mobilenet1.0_custom", classes=[])
    with pytest.raises(ValueError, match="more than once"):
        get_model("ssd_300_mobilenet1.0_custom", classes=["a", "a"])
    with pytest.raises(ValueError, match="use the \\*_custom model"):
        get_model("ssd_300_mobilenet1.0_voc", classes=["a"])
    with pytest.raises(ValueError, match="pattern 'base.\\*' matches no layer"):
        get_model("ssd_300_mobilenet1.0_voc", bias_free=("base.*",))
    with pytest.raises(ValueError, match="norm='batchnorm'"):
        get_model("ssd_300_mobilenet1.0_voc", norm="batchnorm", bias_free=("pw*",))
    with pytest.raises(FileNotFoundError, match="missing.params does not exist"):
        get_model("ssd_300_mobilenet1.0_voc", pretrained_base=tmp_path / "missing.params")
    zoo = MobileNet(0.5)
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 224, 224)))
    zoo.save_parameters(str(tmp_path / "half.params"))
    with pytest.raises(ValueError, match="does not match layer conv0.*another width"):
        get_model("ssd_300_mobilenet1.0_voc", pretrained_base=tmp_path / "half.params")
    (tmp_path / "junk.params").write_bytes(b"not a params file")
    with pytest.raises(ValueError, match="junk.params is not an MXNet params file"):
        get_model("ssd_300_mobilenet1.0_voc", pretrained_base=tmp_path / "junk.params")


def test_anchors_leave_the_running_statistics_alone():
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a", "b"])
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    var = next(p for n, p in net.collect_params().items() if n.endswith("running_var"))
    for i, data in enumerate(var.list_data()):
        data[:] = i + 2.0
    first = var.data(mx.cpu(0)).asnumpy()
    stats = [p for n, p in net.collect_params().items() if n.endswith(("_mean", "_var"))]
    before = [[d.asnumpy() for d in p.list_data()] for p in stats]
    anchors = ssd_anchors(net, 300, mx.cpu(1))
    after = [[d.asnumpy() for d in p.list_data()] for p in stats]
    assert len(stats) == 2 * 35
    for b, a in zip(before, after):
        assert [x.tobytes() for x in b] == [x.tobytes() for x in a]
    assert anchors.shape == (1, 2268, 4) and anchors.context == mx.cpu(1)
    with autograd.train_mode():  # the forward alone does move them: the restore is needed
        net(mx.nd.zeros((1, 3, 300, 300)))
    assert not np.array_equal(var.data(mx.cpu(0)).asnumpy(), first)


def test_ops_implementation_trains_the_same_model_with_interchangeable_params(tmp_path):
    """What a GPU run uses (norm_impl ops) against the compiled operator: one training step
    from the same weights, then its params file loaded by the other for inference."""
    x = mx.nd.array(np.random.RandomState(0).uniform(size=(2, 3, 300, 300)))
    nets, outputs, updates = {}, {}, {}
    for impl in ("native", "ops"):
        mx.random.seed(0)
        net = build("ssd_300_mobilenet0.25_custom", classes=["a", "b"], norm_impl=impl)
        net.hybridize(static_alloc=True, static_shape=True)
        net(x)  # the heads' shapes
        before = [p.data().asnumpy() for p in net.collect_params().values()]
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
        with autograd.record():
            cls_pred, box_pred, _ = net(x)
            loss = (cls_pred ** 2).mean() + box_pred.abs().mean()
        loss.backward()
        trainer.step(2)
        mx.nd.waitall()
        nets[impl], outputs[impl] = net, [cls_pred.asnumpy(), box_pred.asnumpy()]
        updates[impl] = [(p.data().asnumpy() - b, np.abs(b).max()) for p, b in
                         zip(net.collect_params().values(), before)]
    for got, want in zip(outputs["ops"], outputs["native"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # deep float32 gradients differ by rounding by several percent between any two computes
    # (and an update is rounded to the parameter's float32 spacing); a wrong gradient would
    # differ by its own size. test_norm.py checks the layer's gradients tightly.
    for (got, size), (want, _) in zip(updates["ops"], updates["native"]):
        assert np.abs(got - want).max() <= 0.2 * np.abs(want).max() + 4e-7 * size
    nets["ops"].save_parameters(str(tmp_path / "ops.params"))
    nets["native"].load_parameters(str(tmp_path / "ops.params"))
    nets["native"].hybridize(static_alloc=True)
    nets["ops"].hybridize(static_alloc=True)
    for got, want in zip(nets["native"](x), nets["ops"](x)):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-4)


def test_uncentered_batchnorm_learns_no_shift_but_keeps_its_mean():
    """model.norm=batchnorm_uncentered (study v3's arm (f)): stock BatchNorm everywhere, beta
    fixed at zero through training, the running mean tracked as stock BatchNorm tracks it."""
    from ssd_nobias.model.norm import UncenteredBatchNorm
    net = build(norm="batchnorm_uncentered")
    found = norms(net)
    assert found and all(isinstance(b, UncenteredBatchNorm) for b in found)
    assert all(b.beta.grad_req == "null" for b in found)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "wd": 0.1,
                                                          "momentum": 0.9})
    x = mx.nd.random.uniform(shape=(2, 3, 300, 300))
    for _ in range(2):
        with autograd.record():
            loss = sum(o.sum() for o in net(x)[:2])
        loss.backward()
        trainer.step(2)
    assert all(b.beta.data().abs().max().asscalar() == 0 for b in found)
    assert max(b.running_mean.data().abs().max().asscalar() for b in found) > 0
    with pytest.raises(ValueError, match="no beta"):
        UncenteredBatchNorm(center=True)
