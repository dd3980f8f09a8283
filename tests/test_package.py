"""The package as a user installs it: a wheel built from this checkout, installed into a fresh
virtualenv (its dependencies borrowed from the test environment), runs `ssd-nobias` jobs."""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*command, **kw):
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("package")
    source = base / "source"  # a copy: setuptools builds in the tree it is given
    shutil.copytree(os.path.join(ROOT, "ssd_nobias"), source / "ssd_nobias",
                    ignore=shutil.ignore_patterns("_build", "__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", base / "dist", source)
    wheel = next((base / "dist").glob("ssd_nobias-*.whl"))
    run(sys.executable, "-m", "venv", base / "venv")
    python = base / "venv" / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    with open(os.path.join(purelib.strip(), "borrowed_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # MXNet & co. from this environment
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
    return wheel, base / "venv" / "bin"


def test_the_wheel_holds_the_operator_sources_and_ranges_not_pins(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"ssd_nobias/csrc/nobias_bn.cc", "ssd_nobias/csrc/gpu_kernels.cuh",
            "ssd_nobias/commands/train.py", "ssd_nobias/runtime/host.py",
            "ssd_nobias/configs/demo_synthetic.yaml"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "bench/", "studies/",
                                                   "ssd_nobias_studies", "ssd_nobias/analysis"))]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not [r for r in requires if "==" in r.split(";")[0]], requires
    assert "Requires-Python: <3.12,>=3.10" in metadata
    assert "ssd-nobias = ssd_nobias.commands:main" in entry_points


def test_the_console_command_runs_jobs_from_the_installed_package(installed, tmp_path):
    _, bin_dir = installed
    listing = run(bin_dir / "ssd-nobias", "--help")
    assert "train " in listing and "check-dataset" in listing and "make-neon-trees" in listing
    where = run(bin_dir / "python", "-c", "import ssd_nobias; print(ssd_nobias.__file__)",
                cwd=tmp_path)  # not this checkout's folder: `python -c` imports from the cwd
    assert where.startswith(str(bin_dir.parent))  # the wheel's copy, not this checkout
    data = tmp_path / "data"
    run(bin_dir / "ssd-nobias", "make-synthetic", "--out", data, "--train", "4", "--val", "2",
        "--size", "96", cwd=tmp_path)
    # the configs ship with the package, by name
    report = run(bin_dir / "ssd-nobias", "check-dataset", "--config", "demo_synthetic",
                 f"data.root={data}", "--threads", "1", cwd=tmp_path)
    assert "no problems found" in report
    config = run(bin_dir / "ssd-nobias", "train", "--print-config", "train.lr=0.2", cwd=tmp_path)
    assert "train.lr = 0.2  (default 0.001)" in config
    bad = subprocess.run([bin_dir / "ssd-nobias", "trian"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown job 'trian'" in bad.stderr


def other_python():
    """An interpreter this project does not run on (3.12 or later, 3.9 or earlier), if any."""
    pyenv = os.path.join(os.environ.get("PYENV_ROOT", "~/.pyenv"), "versions")
    kept = sorted(glob.glob(os.path.join(os.path.expanduser(pyenv), "3.1[2-9]*", "bin",
                                         "python3")))
    for found in [shutil.which(n) for n in ("python3.12", "python3.13", "python3.9")] + kept:
        if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
            return found
    return None


@pytest.mark.skipif(other_python() is None, reason="no Python outside 3.10-3.11 here")
def test_an_unsupported_python_is_told_so_before_anything_is_built(tmp_path):
    """pip runs setup.py before it builds any dependency: there, and not in numpy's sdist
    build, a Python 3.12 user learns what to install."""
    done = subprocess.run([other_python(), os.path.join(ROOT, "setup.py"), "--name"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("ssd_nobias needs Python 3.10 or 3.11 (MXNet 1.9 needs numpy")
    assert "pip install -U pip" in done.stderr
