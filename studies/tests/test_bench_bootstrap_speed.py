"""studies/scripts/bootstrap_speed.py on a committed study run's matches: both ways of scoring a
resample
agree (it exits otherwise) and it prints each metric's cost."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")


def test_times_both_metrics_on_committed_matches():
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "bootstrap_speed.py"),
                           "--resamples", "3"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "300 images" in lines[0] and "3 resamples" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["ap50", "ap"]


def test_a_missing_file_or_variant_is_named_without_a_traceback(tmp_path):
    bench = os.path.join(SCRIPTS, "bootstrap_speed.py")
    missing = subprocess.run([sys.executable, bench, "--matches", str(tmp_path / "x.json.gz")],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "x.json.gz" in missing.stderr
    assert "Traceback" not in missing.stderr
    other = subprocess.run([sys.executable, bench, "--variant", "nope"], capture_output=True,
                           text=True, cwd=ROOT)
    assert other.returncode == 2 and "'nope'" in other.stderr and "Traceback" not in other.stderr
