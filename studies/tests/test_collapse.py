"""A collapsed run's profile (losses, val AP50, depthwise active fraction and spatial share per
checkpoint) and studies/scripts/collapse.py, which draws runs side by side."""
import json
import os
import subprocess
import sys

import pytest

from ssd_nobias_studies.collapse import run_profile, snapshot_epochs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")


def test_snapshot_labels_become_epochs():
    assert snapshot_epochs(["init", "0005", "0010", "last"], 12) == [0, 5, 10, 12]


@pytest.mark.slow
def test_run_profile_follows_every_checkpoint(tiny_run):
    p = run_profile(tiny_run, images=2)
    assert p["snapshot_epochs"] == [0, 1, 2, 2]
    assert [row[0] for row in p["loss_curve"]] == [1, 2]
    assert [epoch for epoch, _ in p["val_curve"]] == [2]
    assert list(p["last"]) == [f"dw{k}" for k in range(1, 14)]
    for series in (p["depthwise_active"], p["depthwise_spatial_share"]):
        assert len(series) == 4 and all(0 <= v <= 1 for v in series)
    assert p["depthwise_active"][-1] == p["depthwise_active"][-2]  # 'last' is epoch 2's weights
    assert list(p["head_inputs"]) == ["pw11", "pw13"] + [f"extra{i}_conv" for i in range(1, 5)]
    for unit in p["head_inputs"].values():
        assert len(unit["active"]) == 4 and all(0 <= v <= 1 for v in unit["spatial_share"])


@pytest.mark.slow
@pytest.mark.subprocess
def test_collapse_script_writes_json_and_picture(tiny_run, tmp_path):
    out = tmp_path / "collapse"
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "collapse.py"),
                           f"first={tiny_run}", f"again={tiny_run}", "--out", str(out),
                           "--images", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(f"{out}.json") as f:
        saved = json.load(f)
    assert list(saved["runs"]) == ["first", "again"] and saved["images"] == 2
    assert saved["runs"]["first"]["depthwise_active"] == saved["runs"]["again"]["depthwise_active"]
    assert os.path.getsize(f"{out}.png") > 10000
    assert "first: last box loss" in done.stdout
    bad = subprocess.run([sys.executable, os.path.join(SCRIPTS, "collapse.py"),
                          tiny_run, "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not LABEL=RUN_DIR" in bad.stderr
