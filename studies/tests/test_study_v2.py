"""studies/scripts/study.py end to end on a budget of minutes: its json, its picture, its table,
resume."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.engine.run_dir import continues

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")


def run_study(tmp_path, *args):
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "study.py"), "--train",
                           "16", "--epochs", "1", "--val-images", "12", "--test-images", "12",
                           "--arms", "nobias", "batchnorm", "--sweep-lrs", "0.02", "0.05",
                           "--sweep-extend", "0",
                           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
                           *args],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "results" / "study.json") as f:
        return json.load(f), done.stdout


def test_study_sweeps_trains_three_ways_reports_and_resumes(tmp_path):
    study, stdout = run_study(tmp_path, "--seeds", "1")
    assert study["protocol"]["seeds"] == [1]
    assert study["protocol"]["data"] == {"generator": "scripts/make_synthetic_voc.py",
                                         "variant": "shapes", "seed": 0, "train_images": 16,
                                         "val_images": 12}
    assert study["protocol"]["test"]["seed"] == 1 and study["protocol"]["test"]["images"] == 12
    sweep = study["sweep"]
    assert sweep["lrs"] == [0.02, 0.05] and sweep["extend"] == 0
    assert set(sweep["val_map"]) == {"nobias", "batchnorm"}
    for arm, by_lr in sweep["val_map"].items():  # each arm at its best lr on val
        assert set(by_lr) == {"0.02", "0.05"}
        best = float(max(by_lr, key=by_lr.get))
        assert study["protocol"]["lrs"][arm] == best
        assert study["arms"][arm]["seeds"]["1"]["lr"] == best
        # the sweep trained seed 1 at every lr: its run at the best one is seed 1's
        assert not (tmp_path / "work" / "runs" / f"{arm}-1").exists()
        assert (tmp_path / "work" / "runs" / f"sweep-{arm}-lr{best}" / "export").is_dir()
    arms = study["arms"]
    assert set(arms) == {"nobias", "batchnorm", "naive"}
    assert arms["nobias"]["recipe"] == {
        "model.norm": "nobias", "model.conv_weights": "centered",
        "model.depthwise_weights": "dc_positive", "model.activation": "relu",
        "model.leaky_slope": 0.1}
    assert arms["batchnorm"]["recipe"]["model.conv_weights"] == "plain"
    assert arms["naive"]["recipe"]["export"] == "naive_fix.export_zero_shift"
    nobias, stock, naive = (arms[a]["seeds"]["1"] for a in ("nobias", "batchnorm", "naive"))
    assert nobias["bias_free_layers"] == 35  # the deploy graph is bias-free
    assert stock["bias_free_layers"] == 0  # folded with biases
    assert naive["bias_free_layers"] == 35 and naive["max_shift"] > 0
    assert abs(naive["map_before"] - stock["map"]) < 2e-3
    assert all(0 <= r["test_map"] <= 1 for r in (nobias, stock, naive))
    assert abs(nobias["float32_pair_map"] - nobias["map"]) < 2e-3  # the accelerator pair
    assert 0 <= nobias["int8_map"] <= 1 and 0 <= nobias["int8_int32_heads_map"] <= 1
    assert nobias["head_biases_on_host"] == 12
    assert nobias["curve"][-1][0] == 1.0
    assert 0 <= nobias["dead_fraction"] <= 1 and naive["dead_fraction"] is None
    assert nobias["dead_fraction"] == nobias["dead_channels"]["dead"][-1]
    assert set(nobias["cpu"]) == {"model", "cores", "avx512", "vnni", "amx"}
    assert os.path.getsize(tmp_path / "results" / "study.png") > 10000
    assert "(c) stock BatchNorm, shift dropped (naive fix)" in stdout

    # a study stopped after seed 1's nobias arm: the resume evaluates the rest of seed 1 again,
    # from the sweep's run at the chosen lr (adding seeds: test_resume_adds_seeds_...)
    partial = json.loads(json.dumps(study))
    for arm in ("batchnorm", "naive"):
        del partial["arms"][arm]["seeds"]["1"]
    with open(tmp_path / "results" / "study.json", "w") as f:
        json.dump(partial, f)
    resumed, stdout = run_study(tmp_path, "--seeds", "1", "--resume")
    assert "sweep " not in stdout  # the sweep was done: nothing trained again
    assert resumed["sweep"] == study["sweep"] and resumed["protocol"] == study["protocol"]
    for arm in arms:  # evaluated again from the same run: the same figures
        kept, before = resumed["arms"][arm]["seeds"]["1"], arms[arm]["seeds"]["1"]
        assert kept["map"] == before["map"] and kept["test_map"] == before["test_map"]
    assert not (tmp_path / "work" / "runs" / "batchnorm-1").exists()
    summary = resumed["summary"]
    assert summary["test_best_stock_arm"] == "batchnorm"
    assert summary["deploy_minus_trained_max_abs"] < 5e-4
    assert summary["nobias"]["int8_minus_deploy_points_max_abs"] == \
        100 * abs(nobias["int8_map"] - nobias["map"])
    for arm in arms:
        assert summary[arm]["map_min"] == summary[arm]["map_max"] == arms[arm]["seeds"]["1"]["map"]
        assert summary[arm]["train_images_per_s"] > 0


def test_resume_adds_seeds_and_reruns_only_what_is_missing_or_at_another_lr(study_module,
                                                                           tmp_path, monkeypatch):
    """main() with the training and evaluation of an arm (one_arm) replaced by figures that are
    a function of the arm and seed: which arm-seeds run, and the summary over the seeds."""
    ran = []

    def one_arm(arm, seed, data, test, work, budget, lr, trained=None, resume=False):
        ran.append((arm, seed, resume))
        value = {"nobias": 0.8, "batchnorm": 0.6}[arm] + seed / 100

        def result(m):
            return {"map": m, "test_map": m - 0.05, "trained_map": m, "curve": [[1.0, m]],
                    "lr": lr, "cpu": {}, "train_images_per_s": 10.0 * seed,
                    "deploy_images_per_s": 20.0, "recipe": {"model.norm": arm}}
        return dict({arm: result(value)}, **({"naive": result(0.01)} if arm == "batchnorm"
                                             else {}))

    monkeypatch.setattr(study_module, "one_arm", one_arm)
    monkeypatch.setattr(study_module, "study_data", lambda work, budget: "data")
    monkeypatch.setattr(study_module, "test_data", lambda work, budget: "test")

    def main(*args, lrs=("nobias=0.02", "batchnorm=0.01")):
        ran.clear()
        monkeypatch.setattr(sys, "argv", ["study.py", "--arms", "nobias", "batchnorm", "--lrs",
                                          *lrs, "--out", str(tmp_path), *args])
        study_module.main()
        with open(tmp_path / "study.json") as f:
            return json.load(f)

    main("--seeds", "1")
    assert ran == [("nobias", 1, False), ("batchnorm", 1, False)]
    # a resume continues a part-trained arm (test_an_arm_stopped_mid_training_...); a new
    # study starts every arm over
    study = main("--seeds", "2", "--resume")
    assert ran == [("nobias", 2, True), ("batchnorm", 2, True)]
    assert study["protocol"]["seeds"] == [1, 2]
    assert study["protocol"]["lrs"] == {"nobias": 0.02, "batchnorm": 0.01}
    summary = study["summary"]
    assert (summary["nobias"]["test_map_min"], summary["nobias"]["test_map_max"]) == \
        (pytest.approx(0.76), pytest.approx(0.77))
    assert summary["batchnorm"]["map_mean"] == pytest.approx(0.615)
    assert summary["nobias"]["train_images_per_s"] == 15.0  # the median over seeds
    assert summary["test_nobias_minus_best_stock_points"] == pytest.approx(20.0)
    assert set(study["arms"]) == {"nobias", "batchnorm", "naive"}
    assert os.path.getsize(tmp_path / "study.png") > 10000
    again = main("--seeds", "1", "2", "--resume")
    assert ran == [] and (again["arms"], again["summary"]) == (study["arms"], study["summary"])
    # nobias given another lr: every seed measured at the old one runs again
    study = main("--seeds", "1", "2", "--resume", lrs=("nobias=0.04", "batchnorm=0.01"))
    assert [r[:2] for r in ran] == [("nobias", 1), ("batchnorm", 1), ("nobias", 2),
                                    ("batchnorm", 2)]
    assert {s["lr"] for s in study["arms"]["nobias"]["seeds"].values()} == {0.04}


def load_study():
    """studies/ssd_nobias_studies/study_v2.py (what studies/scripts/study.py runs) as a fresh
    module."""
    spec = importlib.util.spec_from_file_location(
        "study_v2", os.path.join(ROOT, "studies", "ssd_nobias_studies", "study_v2.py"))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


@pytest.fixture
def study_module(monkeypatch):
    """studies/scripts/study.py imported, its training and evaluation replaced by a val mAP that is
    a
    function of the lr alone (`study_module.val_map`), each training recorded in `trained`."""
    study = load_study()
    study.trained = []
    study.val_map = None

    def lr_of(path):
        return float(re.search(r"-lr([0-9.e-]+)", path).group(1))

    monkeypatch.setattr(study, "train_run", lambda run, *a, **kw: study.trained.append(lr_of(run)))
    monkeypatch.setattr(study, "load_config", lambda path: SimpleNamespace(name="x"))
    monkeypatch.setattr(study, "evaluate_checkpoint", lambda cfg, params, out, progress: (
        SimpleNamespace(value=study.val_map(lr_of(out)))))
    return study


@pytest.mark.parametrize("peak, extend, tried, chosen", [
    (0.04, 2, [0.02, 0.04, 0.08], 0.04),  # inside the grid: nothing more
    (0.005, 2, [0.02, 0.04, 0.08, 0.01, 0.005], 0.005),  # below it: halved twice
    (0.001, 2, [0.02, 0.04, 0.08, 0.01, 0.005], 0.005),  # still at the edge: no more than 2
    (0.5, 1, [0.02, 0.04, 0.08, 0.16], 0.16),  # above it, one extension allowed
    (0.3, 0, [0.02, 0.04, 0.08], 0.08)])
def test_sweep_extends_an_arm_whose_best_lr_is_at_the_edge(study_module, peak, extend, tried,
                                                           chosen):
    study_module.val_map = lambda lr: 1 - abs(math.log(lr / peak))
    results = {}
    best = study_module.sweep(results, ["nobias"], [0.02, 0.04, 0.08], 1, "data", "work",
                              {}, save=lambda: None, extend=extend)
    assert study_module.trained == tried and best == {"nobias": chosen}
    study_module.trained.clear()  # resumed: the extensions made count, nothing runs again
    assert study_module.sweep(results, ["nobias"], [0.02, 0.04, 0.08], 1, "data", "work", {},
                              save=lambda: None, extend=extend) == {"nobias": chosen}
    assert study_module.trained == []


def test_study_on_the_hard_dataset_at_given_lrs(tmp_path):
    """The second dataset (eight classes, smaller objects, other generator seeds) at lrs given,
    not swept; an lr missing for an arm is refused before anything runs."""
    command = [sys.executable, os.path.join(SCRIPTS, "study.py"), "--train", "16",
               "--epochs", "1", "--val-images", "8", "--test-images", "8", "--arms",
               "batchnorm_reparam", "--variant", "hard", "--data-seed", "2", "--test-seed", "3",
               "--seeds", "1", "--work", str(tmp_path / "work"), "--out",
               str(tmp_path / "results")]
    refused = subprocess.run(command + ["--lrs", "nobias=0.02"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "ARM=LR for each of the arms batchnorm_reparam" in refused.stderr
    done = subprocess.run(command + ["--lrs", "batchnorm_reparam=0.01"], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "results" / "study.json") as f:
        study = json.load(f)
    protocol = study["protocol"]
    assert protocol["data"]["variant"] == protocol["test"]["variant"] == "hard"
    assert (protocol["data"]["seed"], protocol["test"]["seed"]) == (2, 3)
    assert protocol["lrs"] == {"batchnorm_reparam": 0.01} and study["sweep"] is None
    assert study["arms"]["batchnorm_reparam"]["seeds"]["1"]["lr"] == 0.01
    with open(tmp_path / "work" / "runs" / "batchnorm_reparam-1" / "config.yaml") as f:
        assert "lr: 0.01" in f.read()
    for data in ("data-16-8-hard-seed2", "test-3-8-hard"):
        with open(tmp_path / "work" / data / "classes.txt") as f:
            assert len(f.read().split()) == 8


def test_an_arm_stopped_mid_training_continues_from_its_checkpoint(tmp_path):
    """A study stopped mid-arm loses no epoch: the arm's run continues from its newest
    checkpoint and ends where an uninterrupted one does; a run of another config starts over."""
    study = load_study()
    data = study.synthetic(str(tmp_path / "data"), 16, 4, 0, "shapes")
    budget = {"epochs": 2, "val_interval": 2, "save_interval": 1}
    run, arm = tmp_path / "run", study.TRAINED["nobias"] + ["train.lr=0.02"]
    whole = study.train_run(str(run), arm, 1, data, budget, resume=True)
    straight = mx.nd.load(str(run / "demo-last.params"))
    for name in os.listdir(run):  # stopped during epoch 2: only epoch 1's checkpoint written
        if name.startswith(("demo-0002.", "demo-last.")):
            os.remove(run / name)
    resumed = study.train_run(str(run), arm, 1, data, budget, resume=True)
    with open(run / "train.log") as f:
        assert "resumed from" in f.read()
    assert resumed["curve"] == whole["curve"]
    continued = mx.nd.load(str(run / "demo-last.params"))
    assert continued.keys() == straight.keys()
    for key, value in straight.items():
        np.testing.assert_array_equal(continued[key].asnumpy(), value.asnumpy(), err_msg=key)
    config = os.path.join(ROOT, "configs", "demo_synthetic.yaml")
    same = [f"data.root={data}", f"output_dir={run}", "seed=1", "train.epochs=2",
            "train.val_interval=2", "train.save_interval=1"] + arm
    assert continues(str(run), config, same)
    assert not continues(str(run), config, same[:-1] + ["train.lr=0.04"])
    assert not continues(str(run), config, [o.replace("seed=1", "seed=2") for o in same])
    assert not continues(str(tmp_path / "empty"), config, same)
    with open(run / "config.yaml", "a") as f:  # a run of a version with other keys
        f.write("retired_key: 1\n")
    assert not continues(str(run), config, same)


def test_the_plot_names_the_dataset_it_is_over(study_module):
    budget = {"variant": "shapes", "data_seed": 0, "train": 1000, "epochs": 36}
    assert study_module.plot_title(budget, [2, 1]) == \
        "synthetic shapes, 1000 images x 36 epochs, seeds 1, 2"
    assert study_module.plot_title(dict(budget, variant="hard", data_seed=2), [1]).startswith(
        "synthetic hard variant, data seed 2, 1000 images")
