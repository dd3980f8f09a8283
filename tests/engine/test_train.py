"""The training recipe on a tiny synthetic dataset: run files, exact resume, divergence stop,
torn checkpoints, the schedule and weight-decay exclusions, and the scripts' error edge."""
import csv
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ssd_nobias.model import native
from ssd_nobias.model.checkpoint import find_resume, load_checkpoint, read_meta, save_checkpoint
from ssd_nobias.config import load_config, scaled_lr
from ssd_nobias.errors import DataError
from ssd_nobias.model.ssd import get_model, recipe_summary
from ssd_nobias.data.loaders import split_batch
from ssd_nobias.engine.metrics import CSV_FIELDS
from ssd_nobias.engine.train import (Schedule, Trainer, TrainingDiverged, amp_fp32_ops,
                                     no_decay_params, train)

from conftest import make_tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_data(tmp_path_factory, "data", train=8, val=3, seed=0)


def tiny(data_root, out, *overrides):
    """A two-context CPU run: 2 iterations per epoch of 4 images, validation every epoch."""
    return load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={data_root}", f"output_dir={out}", "name=tiny", "data.num_workers=0",
        "train.ctx=[cpu0,cpu1]", "train.batch_size=4", "train.epochs=2", "train.warmup_iters=2",
        "train.log_interval=1", "train.val_interval=1", "train.save_interval=1",
        "eval.batch_size=2", *overrides])


def params_of(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    result = train(tiny(data_root, out))
    return out, result


def test_a_run_writes_its_files(finished_run):
    out, result = finished_run
    assert result.metric == "voc07" and 0.0 <= result.value <= 1.0
    for name in ("config.yaml", "train.log", "metrics.csv", "curves.png", "train_batch.jpg",
                 "tiny-last.params", "tiny-last.states", "tiny-last.json",
                 "tiny-0001.params", "tiny-0002.params", "tiny-best.params", "tiny-best.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "tiny-best.states"))
    # the numbered checkpoint of the last epoch is the last one under a second name: a hard
    # link, its sidecar naming its own files, loadable as any checkpoint
    last, numbered = (os.stat(os.path.join(out, f"tiny-{t}.params")) for t in ("last", "0002"))
    assert (last.st_ino, last.st_nlink) == (numbered.st_ino, 2)
    meta = read_meta(os.path.join(out, "tiny-0002.params"))
    assert meta["params"]["file"] == "tiny-0002.params" and meta["states"]["file"] == \
        "tiny-0002.states" and meta["iteration"] == 4
    assert read_meta(os.path.join(out, "tiny-best.params"))["params"]["file"] == \
        "tiny-best.params"
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    assert [int(r["iteration"]) for r in rows if r["loss"]] == [1, 2, 3, 4]
    assert len([r for r in rows if r["val_map"]]) == 2
    meta = read_meta(os.path.join(out, "tiny-last.params"))
    assert (meta["epoch"], meta["iteration"]) == (2, 4)
    assert meta["classes"] == ["circle", "square", "triangle", "star"]


def test_the_first_lines_of_a_run_say_what_trains_and_how(finished_run):
    with open(os.path.join(finished_run[0], "train.log")) as f:
        lines = [line.split(" ", 2)[2].rstrip() for line in f][:10]  # after the timestamp
    assert lines[0].startswith("training ssd_300_mobilenet0.25_custom (nobias) on cpu(0),cpu(1):"
                               " 8 images, 2 iterations/epoch, 2 epochs (4 iterations)")
    # the demo config's lr and warmup are for its base batch 16: batch 4 takes a quarter of
    # the lr and four times the warmup iterations
    assert lines[1] == "lr 0.0125 = train.lr 0.05 x batch 4 / base 16 (cosine, warmup 8 " \
                       "iterations); batch 4 global, 2 per device (1 worker(s) x 2 context(s))"
    # this tiny run is shorter than its warmup: said, as any such run
    assert lines[2] == ("train.warmup_iters (8 iterations here) is not shorter than the run "
                        "(4): the lr never reaches 0.0125")
    assert lines[3:8] == [
        "recipe full: NoBiasBatchNorm, centered weights, fused ReLU",
        "recipe depthwise: NoBiasBatchNorm, dc_positive weights, fused ReLU",
        "recipe pointwise: NoBiasBatchNorm, centered weights, fused ReLU",
        "recipe extras: NoBiasBatchNorm, centered weights, fused ReLU",
        "recipe heads: 12 predictor convs, 12 with a bias"]
    assert re.fullmatch(r"NoBiasBatchNorm: (native|ops) \(.*\) x35", lines[8])
    assert re.fullmatch(r"OpenMP threads \S.*; CPU .*, \d+ cores, (AVX-512.*|AVX2|below AVX2)",
                        lines[9])


def test_every_progress_line_of_a_run_says_how_long_is_left(finished_run):
    with open(os.path.join(finished_run[0], "train.log")) as f:
        progress = [line for line in f if " loss " in line]
    assert len(progress) == 4  # log_interval 1, 4 iterations
    assert all(re.search(r"img/s, ETA \d+:\d\d$", line.rstrip()) for line in progress)
    assert progress[-1].rstrip().endswith("ETA 0:00")  # nothing left after the last


def test_the_recipe_summary_lists_each_variant_of_a_kind():
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a"], bias_free=["dw1", "pw*"],
                    heads_bias=False)
    summary = recipe_summary(net)
    assert summary["depthwise"].startswith("NoBiasBatchNorm, dc_positive weights, fused ReLU "
                                           "(dw1); BatchNorm, plain weights, relu (dw2, ")
    assert summary["pointwise"] == "NoBiasBatchNorm, centered weights, fused ReLU"
    assert summary["heads"] == "12 predictor convs, 0 with a bias"


def test_trained_model_has_zero_means_and_no_conv_bias(finished_run):
    params = params_of(os.path.join(finished_run[0], "tiny-last.params"))
    means = [k for k in params if k.endswith("running_mean")]
    assert means and all(not params[k].any() for k in means)
    assert not [k for k in params if k.endswith("beta")]
    gammas = [k for k in params if k.endswith("gamma")]
    assert any(not np.array_equal(params[k], np.ones_like(params[k])) for k in gammas)


@pytest.mark.slow
def test_resume_after_interrupt_equals_uninterrupted(finished_run, data_root, tmp_path,
                                                     monkeypatch):
    out = str(tmp_path)
    real_step = Trainer.step

    def interrupted(self, batch):
        if self.iteration == 3:  # mid second epoch
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(data_root, out))
    assert read_meta(os.path.join(out, "tiny-last.params"))["iteration"] == 3
    monkeypatch.setattr(Trainer, "step", real_step)
    train(tiny(data_root, out, "train.resume=auto"))
    resumed = params_of(os.path.join(out, "tiny-last.params"))
    straight = params_of(os.path.join(finished_run[0], "tiny-last.params"))
    assert resumed.keys() == straight.keys()
    for k in straight:
        if k.endswith("running_var"):
            # Each context keeps its own statistics and a checkpoint stores their average, so
            # a resumed run averages before, not after, the last updates: equal up to rounding.
            np.testing.assert_allclose(resumed[k], straight[k], rtol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        iterations = [int(r["iteration"]) for r in csv.DictReader(f) if r["loss"]]
    assert iterations == [1, 2, 3, 4]


def test_a_warmup_longer_than_the_run_is_named(data_root, tmp_path, caplog):
    trainer = Trainer(tiny(data_root, str(tmp_path), "train.warmup_iters=4",
                           "train.base_batch_size=4"))
    with caplog.at_level("WARNING", logger="ssd_nobias"):
        trainer._announce()
    assert "is not shorter than the run (4): the lr never reaches" in caplog.text
    caplog.clear()
    Trainer(tiny(data_root, str(tmp_path / "short"), "train.warmup_iters=3",
                 "train.base_batch_size=4"))._announce()
    assert "never reaches" not in caplog.text


@pytest.mark.slow
def test_a_run_started_with_relative_paths_is_evaluated_from_another_folder(data_root, tmp_path,
                                                                             monkeypatch):
    """The run records its paths absolute, so eval --params from the parent folder finds the
    dataset, writes beside the checkpoint, and eval.json names the checkpoint and its hash."""
    from ssd_nobias import cli
    from ssd_nobias.atomic import sha256
    from ssd_nobias.commands import evaluate as eval_command

    start = tmp_path / "work"
    start.mkdir()
    monkeypatch.chdir(start)
    train(tiny(os.path.relpath(data_root), "runs/a", "train.epochs=1"))
    run = start / "runs" / "a"
    assert load_config(str(run / "config.yaml")).data.root == data_root
    monkeypatch.chdir(tmp_path)
    assert cli.run(eval_command.main, ["--params", "work/runs/a/tiny-best.params"]) == 0
    with open(run / "eval" / "eval.json") as f:
        made = json.load(f)["provenance"]
    assert made["model"] == {"path": str(run / "tiny-best.params"),
                             "sha256": sha256(str(run / "tiny-best.params")),
                             "kind": "params", "runtime": "mxnet"}
    assert made["device"] == "cpu(0),cpu(1)"  # where it trained: tiny() runs on two


def test_divergence_stops_with_the_checkpoint_intact(finished_run, data_root, tmp_path):
    out = str(tmp_path)
    cfg = tiny(data_root, out, "train.epochs=1")
    train(cfg)
    before = params_of(os.path.join(out, "tiny-last.params"))
    with pytest.raises(TrainingDiverged, match="iteration 4"):
        train(tiny(data_root, out, "train.resume=auto", "train.lr=1e38", "train.warmup_iters=0"))
    meta = read_meta(os.path.join(out, "tiny-last.params"))
    assert meta is not None and meta["iteration"] == 2
    after = params_of(os.path.join(out, "tiny-last.params"))
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_a_running_variance_that_overflows_stops_the_run_before_anything_is_saved(
        data_root, tmp_path, monkeypatch):
    """The loss can stay finite while a norm's running variance overflows (train.lr=1000 did
    it): the run stops naming the parameter, and no checkpoint of it is written; a checkpoint
    holding infinity is refused by eval and export."""
    real_step = Trainer.step

    def overflowing_step(self, batch):
        values = real_step(self, batch)
        for name, param in self.net.collect_params().items():
            if name.endswith("running_var"):
                param.set_data(param.data() * np.inf)
                break
        return values

    monkeypatch.setattr(Trainer, "step", overflowing_step)
    out = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"running_var is not finite at iteration 2"):
        train(tiny(data_root, out, "train.epochs=1"))
    assert not [n for n in os.listdir(out) if n.endswith((".params", ".states"))]


def test_a_checkpoint_holding_infinity_is_refused_by_name(finished_run, tmp_path):
    from ssd_nobias.runtime.predictors import load_trained

    out, _ = finished_run
    cfg = load_config(os.path.join(out, "config.yaml"))
    net, _ = load_trained(cfg, os.path.join(out, "tiny-last.params"), [mx.cpu()])
    param = next(p for n, p in net.collect_params().items() if n.endswith("running_var"))
    param.set_data(param.data() * np.inf)
    path = str(tmp_path / "bad")
    save_checkpoint(path, net, None, read_meta(os.path.join(out, "tiny-last.params")))
    with pytest.raises(DataError, match=r"bad.params: \w+running_var holds NaN or infinity"):
        load_trained(cfg, path + ".params", [mx.cpu()])


def test_floats_in_the_config_must_be_finite_and_overrides_yaml():
    from ssd_nobias.errors import ConfigError

    for value in (".inf", "-.inf", ".nan", "inf", "1e400"):
        with pytest.raises(ConfigError, match=r"'train.lr' in command line must be a finite "
                                              r"float"):
            load_config(None, [f"train.lr={value}"])
    with pytest.raises(ConfigError, match=r"override 'train.lr=\[1,': its value is not YAML"):
        load_config(None, ["train.lr=[1,"])
    with pytest.raises(ConfigError, match="its value is not YAML"):
        load_config(None, ["train.lr=!!python/object:os.system x"])


def batch_loss(trainer, batch):
    """The training loss of `batch` (training-mode forward), nothing updated but statistics."""
    data, cls_targets, box_targets = split_batch(batch, trainer.ctx)
    with autograd.train_mode():
        preds = [trainer.net(x) for x in data]
        total, _, _ = trainer.loss_fn([p[0] for p in preds], [p[1] for p in preds], cls_targets,
                                      box_targets)
    return sum(float(v.sum().asscalar()) for v in total)


@pytest.mark.parametrize("recipe", [["model.norm=nobias"], ["model.norm=batchnorm"],
                                    ["model.norm=nobias", "model.activation=leaky"]])
def test_a_small_step_lowers_the_loss_of_its_batch(data_root, tmp_path, recipe):
    """The learning signal, measured where the math guarantees it: one SGD step of a small
    learning rate moves down the gradient, so its batch's loss drops by about lr * |grad|^2,
    far above rounding; a whole trajectory's loss curve is chaotic and is not tested."""
    trainer = Trainer(tiny(data_root, str(tmp_path), *recipe))
    batch = next(iter(trainer.loader))
    before = batch_loss(trainer, batch)
    trainer.trainer.set_learning_rate(1e-3)
    stepped = trainer.step(batch)[0]
    after = batch_loss(trainer, batch)
    assert np.isfinite(before) and stepped == pytest.approx(before, rel=1e-4)
    assert after < 0.99 * before, (before, after)  # measured: 7 to 9 % lower


def small_net():
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a"])
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    return net


def test_torn_checkpoints_are_never_used(tmp_path, monkeypatch):
    net = small_net()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    prefix = str(tmp_path / "r")
    save_checkpoint(prefix + "-0001", net, trainer, {"epoch": 1, "iteration": 10})
    save_checkpoint(prefix + "-last", net, trainer, {"epoch": 1, "iteration": 10})
    assert find_resume(str(tmp_path), "r") in (prefix + "-0001.params", prefix + "-last.params")

    real_replace, calls = os.replace, []

    def killed_after_first_rename(src, dst):
        if calls:
            raise KeyboardInterrupt
        calls.append(dst)
        real_replace(src, dst)

    weight = next(iter(net.collect_params().values()))
    weight.set_data(weight.data() + 1)
    monkeypatch.setattr(os, "replace", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(prefix + "-last", net, trainer, {"epoch": 2, "iteration": 20})
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls == [prefix + "-last.params"]
    assert read_meta(prefix + "-last.params") is None  # new params, old sidecar: CRC mismatch
    assert find_resume(str(tmp_path), "r") == prefix + "-0001.params"
    with pytest.raises(DataError, match="CRC"):
        load_checkpoint(prefix + "-last.params", net, trainer, [mx.cpu()])

    with open(prefix + "-0001.params", "r+b") as f:
        f.truncate(100)
    assert find_resume(str(tmp_path), "r") is None
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.params"), net, None, [mx.cpu()])


def test_schedule():
    cos = Schedule(lr=1.0, total_iters=110, iters_per_epoch=10, warmup_iters=10)
    assert [cos(i) for i in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert cos(10) == 1.0 and cos(60) == pytest.approx(0.5) and cos(110) == pytest.approx(0.0)
    step = Schedule(lr=1.0, total_iters=100, iters_per_epoch=10, mode="step", steps=(3, 6),
                    factor=0.5)
    assert [step(i) for i in (0, 29, 30, 59, 60, 99)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("norm", ["nobias", "batchnorm"])
def test_one_weight_decay_rule_for_every_norms_scale_and_shift(norm):
    """Biases and every norm's gamma and beta are exempt (unless norm_wd: then only biases),
    whichever the norm: the two arms of a comparison are regularized alike."""
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a"], norm=norm)
    params = net.collect_params()
    names = set(no_decay_params(net, norm_wd=False))
    norm_params = {n for n in params if n.endswith(("_gamma", "_beta"))}
    biases = {n for n in params if n.endswith("_bias")}
    assert norm_params and biases
    assert any(n.endswith("_beta") for n in norm_params) == (norm == "batchnorm")
    assert names == norm_params | biases
    assert {n for n in params if params[n].wd_mult == 0.0} == names
    net2 = get_model("ssd_300_mobilenet0.25_custom", classes=["a"], norm=norm)
    assert set(no_decay_params(net2, norm_wd=True)) == \
        {n for n in net2.collect_params() if n.endswith("_bias")}


@pytest.mark.parametrize("batch, base, lr, warmup", [(16, 0, 0.05, 50), (16, 16, 0.05, 50),
                                                     (32, 16, 0.1, 25), (128, 16, 0.4, 6),
                                                     (4, 16, 0.0125, 200)])
def test_lr_scales_linearly_with_the_batch_and_warmup_keeps_its_images(batch, base, lr, warmup):
    cfg = load_config(None, ["train.lr=0.05", "train.warmup_iters=50",
                             f"train.batch_size={batch}", f"train.base_batch_size={base}"])
    got_lr, got_warmup = scaled_lr(cfg.train)
    assert got_lr == pytest.approx(lr, rel=1e-12) and got_warmup == warmup


def script(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.subprocess
def test_eval_script_on_a_trained_checkpoint(finished_run, tmp_path):
    out, result = finished_run
    done = script("eval_ssd.py", "--config", os.path.join(out, "config.yaml"),
                  "--params", os.path.join(out, "tiny-last.params"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "VOC07 mAP" in done.stdout and "triangle" in done.stdout
    for name in ("eval.json", "pr_curves.png", "detections.png"):
        assert os.path.isfile(tmp_path / name)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("args, message", [
    (["train.lr=fast"], "train.lr"),
    (["data.root=/nonexistent/data"], "/nonexistent/data"),
    (["train.ctx=[gpu7]"], "gpu7"),
])
def test_train_script_prints_user_errors_without_traceback(args, message, tmp_path):
    done = script("train_ssd.py", "--config", "configs/demo_synthetic.yaml",
                  f"output_dir={tmp_path}", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.subprocess
def test_eval_script_names_a_missing_checkpoint(finished_run):
    out = finished_run[0]
    done = script("eval_ssd.py", "--config", os.path.join(out, "config.yaml"),
                  "--params", os.path.join(out, "nope.params"))
    assert done.returncode == 2 and "nope.params" in done.stderr
    assert "Traceback" not in done.stderr


def test_amp_casts_up_to_the_operator_only_where_it_has_no_gpu_compute(monkeypatch):
    """With a GPU compute the operator takes float16 data (float32 statistics), as BatchNorm."""
    from mxnet.contrib import amp
    native.load()
    stock = amp.list_fp32_ops("float16")
    assert amp_fp32_ops() == stock + ["nobias_batch_norm"]  # this CPU build
    monkeypatch.setattr(native, "gpu_error", lambda: None)
    assert amp_fp32_ops() == stock


def test_run_curves_average_the_losses_per_epoch_and_keep_each_val_point(tmp_path):
    from ssd_nobias.engine.metrics import CSV_FIELDS, run_curves

    rows = [  # epoch, iteration, loss, cls, box, lr, images/s, val
        ("0.5", "1", "4", "3", "1", "0.1", "5", ""),  # the first speed is left out
        ("1", "2", "2", "1", "1", "0.1", "20", ""),
        ("1", "2", "", "", "", "", "", "0.25"),
        ("1.5", "3", "3", "2", "1", "0.1", "30", ""),
        ("2", "4", "1", "0.5", "0.5", "0.1", "40", ""),
        ("2", "4", "", "", "", "", "", "0.5")]
    (tmp_path / "metrics.csv").write_text(
        ",".join(CSV_FIELDS) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    c = run_curves(str(tmp_path))
    assert c["val_curve"] == [(1.0, 0.25), (2.0, 0.5)]
    assert c["loss_curve"] == [[1, 3.0, 2.0, 1.0], [2, 2.0, 1.25, 0.75]]
    assert c["train_images_per_s"] == 30.0
