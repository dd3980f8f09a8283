"""bench/study.py end to end on a budget of minutes: its json, its picture, its table."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_study_trains_three_ways_and_reports(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "study.py"), "--train",
                           "16", "--epochs", "1", "--seeds", "1", "2", "--work",
                           str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "study.json") as f:
        study = json.load(f)
    assert study["seeds"] == [1, 2] and set(study["per_seed"]) == {"1", "2"}
    for seed in study["per_seed"].values():
        assert set(seed) == {"nobias", "batchnorm", "naive"}
        assert seed["nobias"]["bias_free_layers"] == 35  # the deploy graph is bias-free
        assert seed["batchnorm"]["bias_free_layers"] == 0  # folded with biases
        assert seed["naive"]["bias_free_layers"] == 35 and seed["naive"]["max_shift"] > 0
        assert abs(seed["naive"]["map_before"] - seed["batchnorm"]["map"]) < 2e-3
        assert seed["nobias"]["curve"][-1][0] == 1.0
    summary = study["summary"]
    assert summary["deploy_minus_trained_max_abs"] < 5e-4
    for arm in ("nobias", "batchnorm", "naive"):
        assert summary[arm]["map_min"] <= summary[arm]["map_mean"] <= summary[arm]["map_max"]
        assert summary[arm]["train_images_per_s"] > 0
    assert os.path.getsize(out / "study.png") > 10000
    assert "(c) stock BatchNorm, shift dropped (naive fix)" in done.stdout
