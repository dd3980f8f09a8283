"""bench/bootstrap_speed.py on a committed study run's matches: both ways of scoring a resample
agree (it exits otherwise) and it prints each metric's cost."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_times_both_metrics_on_committed_matches():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bootstrap_speed.py"),
                           "--resamples", "3"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "300 images" in lines[0] and "3 resamples" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["ap50", "ap"]
