"""studies/scripts/class_ap.py: per-class AP50, recall and true-positive score of a study's runs,
with the
class names of its protocol's dataset; a folder that is not a study is named without a
traceback."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ssd_nobias.evaluation.ap_stats import match_image, matches_to_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")
BENCH = os.path.join(SCRIPTS, "class_ap.py")


def study(tmp_path):
    """A shapes study of one run on two images: every circle found at 0.9; one star of two
    found at 0.2, under a false star at 0.5."""
    gt = [np.array([[10, 10, 50, 50, 0, 0], [60, 60, 100, 100, 3, 0]], float),
          np.array([[20, 20, 60, 70, 0, 0], [100, 100, 140, 150, 3, 0]], float)]
    dets = [(np.array([[10, 10, 50, 50], [60, 60, 100, 100], [200, 200, 240, 240]], float),
             np.array([0, 3, 3]), np.array([0.9, 0.2, 0.5])),
            (np.array([[20, 20, 60, 70]], float), np.array([0]), np.array([0.9]))]
    images = [{"id": f"{i}.jpg", "classes": matches_to_json(match_image(*d, g))}
              for i, (d, g) in enumerate(zip(dets, gt))]
    (tmp_path / "matches").mkdir()
    with gzip.open(tmp_path / "matches" / "arm-s1.json.gz", "wt") as f:
        json.dump({"arm": {"test": images}}, f)
    (tmp_path / "protocol.json").write_text(json.dumps(
        {"data": {"synthetic": {"variant": "shapes", "test": 2}}}))
    return tmp_path


def test_per_class_figures_of_a_study(tmp_path):
    folder = study(tmp_path)
    out = tmp_path / "class_ap.json"
    done = subprocess.run([sys.executable, BENCH, str(folder), "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    held = json.loads(out.read_text())
    assert held["classes"] == ["circle", "square", "triangle", "star"]
    rows = held["runs"]["arm-s1"]["arm"]
    assert sorted(rows) == ["circle", "star"]  # classes without objects have no AP
    # scores are kept as float32
    assert rows["circle"] == {"ap50": 1.0, "recall": 1.0, "tp_score": float(np.float32(0.9))}
    # the star found ranks under the false one: precision 1/2 up to recall 1/2, 6 of 11 points
    assert rows["star"] == {"ap50": pytest.approx(3 / 11), "recall": 0.5,
                            "tp_score": float(np.float32(0.2))}
    assert "arm-s1, arm: 1.000 / 1.000 / 0.90   --    --   0.273 / 0.500 / 0.20" \
        in done.stdout


def test_not_a_study_or_a_missing_split_is_named(tmp_path):
    missing = subprocess.run([sys.executable, BENCH, str(tmp_path)], capture_output=True,
                             text=True, cwd=ROOT)
    assert missing.returncode == 2 and str(tmp_path) in missing.stderr
    assert "Traceback" not in missing.stderr
    split = subprocess.run([sys.executable, BENCH, str(study(tmp_path)), "--split", "val"],
                           capture_output=True, text=True, cwd=ROOT)
    assert split.returncode == 2 and "'val'" in split.stderr and "Traceback" not in split.stderr
