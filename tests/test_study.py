"""bench/study.py end to end on a budget of minutes: its json, its picture, its table, resume."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_study(tmp_path, *args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "study.py"), "--train",
                           "16", "--epochs", "1", "--val-images", "12", "--test-images", "12",
                           "--arms", "nobias", "batchnorm", "--sweep-lrs", "0.02", "0.05",
                           "--sweep-extend", "1",
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
                                         "seed": 0, "train_images": 16, "val_images": 12}
    assert study["protocol"]["test"]["seed"] == 1 and study["protocol"]["test"]["images"] == 12
    sweep = study["sweep"]
    assert sweep["lrs"] == [0.02, 0.05] and sweep["extend"] == 1
    assert set(sweep["val_map"]) == {"nobias", "batchnorm"}
    for arm, by_lr in sweep["val_map"].items():  # each arm at its best lr on val
        # two lrs: the best is at an edge, so the sweep tries the next one out beyond it
        grid_best = max((0.02, 0.05), key=lambda lr: by_lr[str(lr)])
        assert sorted(map(float, by_lr)) == sorted([0.02, 0.05, grid_best * (
            0.5 if grid_best == 0.02 else 2)])
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
    assert arms["naive"]["recipe"]["export"] == "--force-zero-shift"
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
    assert set(nobias["cpu"]) == {"model", "cores", "avx512", "vnni"}
    assert os.path.getsize(tmp_path / "results" / "study.png") > 10000
    assert "(c) stock BatchNorm, shift dropped (naive fix)" in stdout

    # a study stopped after seed 1's nobias arm: the resume evaluates the rest of seed 1 again
    partial = json.loads(json.dumps(study))
    for arm in ("batchnorm", "naive"):
        del partial["arms"][arm]["seeds"]["1"]
    with open(tmp_path / "results" / "study.json", "w") as f:
        json.dump(partial, f)
    resumed, stdout = run_study(tmp_path, "--seeds", "2", "--resume")
    assert "sweep " not in stdout  # the sweep was done: nothing trained again
    assert resumed["sweep"] == study["sweep"]
    assert resumed["protocol"]["seeds"] == [1, 2]
    for arm in arms:  # seed 1 kept or completed as it was, seed 2 added
        kept, before = resumed["arms"][arm]["seeds"]["1"], arms[arm]["seeds"]["1"]
        if arm == "nobias":
            assert kept == before
        else:  # evaluated again from the same run: the same figures
            assert kept["map"] == before["map"] and kept["test_map"] == before["test_map"]
        assert set(resumed["arms"][arm]["seeds"]) == {"1", "2"}
    assert (tmp_path / "work" / "runs" / "nobias-2").is_dir()
    summary = resumed["summary"]
    assert summary["test_best_stock_arm"] == "batchnorm"
    assert summary["deploy_minus_trained_max_abs"] < 5e-4
    assert summary["nobias"]["int8_minus_deploy_points_max_abs"] == 100 * max(
        abs(s["int8_map"] - s["map"]) for s in resumed["arms"]["nobias"]["seeds"].values())
    for arm in arms:
        maps = [s["map"] for s in resumed["arms"][arm]["seeds"].values()]
        assert summary[arm]["map_min"] == min(maps) and summary[arm]["map_max"] == max(maps)
        assert summary[arm]["train_images_per_s"] > 0


def test_study_on_the_hard_dataset_at_given_lrs(tmp_path):
    """The second dataset (eight classes, smaller objects, other generator seeds) at lrs given,
    not swept; an lr missing for an arm is refused before anything runs."""
    command = [sys.executable, os.path.join(ROOT, "bench", "study.py"), "--train", "16",
               "--epochs", "1", "--val-images", "8", "--test-images", "8", "--arms",
               "batchnorm", "--variant", "hard", "--data-seed", "2", "--test-seed", "3",
               "--seeds", "1", "--work", str(tmp_path / "work"), "--out",
               str(tmp_path / "results")]
    refused = subprocess.run(command + ["--lrs", "nobias=0.02"], capture_output=True, text=True)
    assert refused.returncode == 2 and "ARM=LR for each of the arms batchnorm" in refused.stderr
    done = subprocess.run(command + ["--lrs", "batchnorm=0.01"], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "results" / "study.json") as f:
        study = json.load(f)
    protocol = study["protocol"]
    assert protocol["data"]["variant"] == protocol["test"]["variant"] == "hard"
    assert (protocol["data"]["seed"], protocol["test"]["seed"]) == (2, 3)
    assert protocol["lrs"] == {"batchnorm": 0.01} and study["sweep"] is None
    assert study["arms"]["batchnorm"]["seeds"]["1"]["lr"] == 0.01
    with open(tmp_path / "work" / "runs" / "batchnorm-1" / "config.yaml") as f:
        assert "lr: 0.01" in f.read()
    for data in ("data-16-8-hard-seed2", "test-3-8-hard"):
        with open(tmp_path / "work" / data / "classes.txt") as f:
            assert len(f.read().split()) == 8
