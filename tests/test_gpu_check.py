"""tools/gpu_check (`make gpu-check`) without a GPU: the check built on the emulated driver runs
its correctness part and fails on a broken kernel; the real build needs no CUDA library to
build and says why it cannot run; its SSD shapes are the model's; its report reads what
run.sh leaves."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu_emulation, pytest.mark.slow]

ROOT = Path(__file__).parent.parent
TOOL = ROOT / "tools" / "gpu_check"
SMALL = ["--quick", "--shapes", str(TOOL / "ssd_shapes.txt"), "--batch", "2",
         "--max-values", "1000"]


def make(build: Path, *targets: str, **variables: str) -> None:
    done = subprocess.run(["make", "-s", "-C", str(TOOL), f"BUILD={build}",
                           f"PYTHON={sys.executable}", *(f"{k}={v}" for k, v in
                                                         variables.items()), *targets],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("gpu_check")
    make(build, "-j2", "emulated", "real")
    return build


def run(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))


@pytest.fixture(scope="module")
def checked(build, tmp_path_factory) -> dict:
    """The emulated check's JSON on the small cases."""
    out = tmp_path_factory.mktemp("checked") / "gpu_check.json"
    done = run(build / "gpu_check_emulated", *SMALL, "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_emulated_check_passes_every_case_with_the_same_bits_twice(build, checked, tmp_path):
    result = checked
    cases = result["cases"]
    # 2 shapes x 3 settings, training, x 3 dtypes; the last SSD layer at batch 2, float32/16
    assert len(cases) == 18 + 2 and result["failed"] == 0 and result["not_repeatable"] == 0
    assert {c["dtype"] for c in cases} == {"float16", "float32", "float64"}
    assert [(c["case"], c["shape"]) for c in cases[-2:]] == [
        ("SSD features.extra4_conv.norm, relu, training", "2x256x1x1")] * 2
    assert len(result["skipped_layers"]) == 34
    assert all(c["ok"] and c["repeatable"] and c["error"] == "" for c in cases)
    # compared for real: other summation orders than the CPU's, within tolerance
    assert 0 < result["worst_error_over_tolerance"] <= 1
    assert result["device"]["timed"] is False and result["timing"] == []
    again = run(build / "gpu_check_emulated", *SMALL, "--no-reference", "--json",
                str(tmp_path / "b.json"))
    assert again.returncode == 0
    assert json.loads((tmp_path / "b.json").read_text())["digest"] == result["digest"]


def test_a_broken_kernel_fails_the_check_naming_the_output(build, tmp_path):
    """running_var's momentum update off by 0.1 %: every training case fails on it."""
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    source = (ROOT / "ssd_nobias" / "csrc" / "gpu_kernels.cuh").read_text()
    broken = source.replace("(1.0 - k.momentum) * m2", "(1.0 - k.momentum) * m2 * 1.001")
    assert broken != source
    (kernels / "gpu_kernels.cuh").write_text(broken)
    shutil.copytree(build, tmp_path / "build", copy_function=shutil.copy2)  # only the kernels
    make(tmp_path / "build", "emulated", KERNELS=str(kernels))              # are rebuilt
    done = run(tmp_path / "build" / "gpu_check_emulated", *SMALL)
    assert done.returncode == 1
    failures = re.findall(r"^FAIL .*", done.stdout, re.M)
    assert len(failures) == 20 - 6  # all but the use_global_stats ones (frozen statistics)
    assert all("running_var" in line for line in failures)


def test_real_build_needs_no_cuda_library_and_says_why_it_cannot_run(build):
    if shutil.which("readelf"):
        dynamic = subprocess.run(["readelf", "-d", str(build / "gpu_check")],
                                 capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)
        assert not [lib for lib in needed if re.match(r"lib(cuda|cudart|nvrtc|mxnet)", lib)]
    done = run(build / "gpu_check", "--quick")
    if "no device" not in done.stderr:
        pytest.skip("this machine has a CUDA driver: make gpu-check runs the real check")
    assert done.returncode == 2
    assert "no device: CUDA driver: cannot load libcuda.so.1" in done.stderr


def test_ssd_shapes_are_the_models_batch_norm_inputs():
    spec = importlib.util.spec_from_file_location("ssd_shapes", TOOL / "ssd_shapes.py")
    ssd_shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ssd_shapes)
    lines = [line.split() for line in (TOOL / "ssd_shapes.txt").read_text().splitlines()
             if not line.startswith("#")]
    assert [(name, tuple(map(int, dims))) for *dims, name in lines] == \
        ssd_shapes.layer_shapes()
    assert len(lines) == 35 and lines[0][:4] == ["32", "32", "150", "150"]


def report(out: Path) -> tuple:
    done = subprocess.run([sys.executable, str(TOOL / "report.py"), str(out)],
                          capture_output=True, text=True)
    return done.returncode, json.loads((out / "report.json").read_text()), done.stdout


def test_report_sums_the_timings_and_fails_on_any_sanitizer_error(checked, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    check = json.loads(json.dumps(checked))
    check["device"].update(peak_bytes_per_s=4e12, l2_bytes=50e6)
    big, small = 32 * 64 * 150 * 150 * 4, 32 * 256 * 4
    check["timing"] = [
        {"layer": "pw1", "shape": "32x64x150x150", "dtype": "float32", "forward_ms": 0.2,
         "forward_backward_ms": 0.5, "bytes": 10 * big, "data_bytes": big},
        {"layer": "extra4", "shape": "32x256x2x2", "dtype": "float32", "forward_ms": 0.01,
         "forward_backward_ms": 0.03, "bytes": 10 * small, "data_bytes": small}]
    check["copy_bytes_per_s"] = 3e12
    (out / "gpu_check.json").write_text(json.dumps(check))
    (out / "gpu_check_again.json").write_text(json.dumps(check))
    (out / "torch.json").write_text(json.dumps({
        "torch": "2.x", "cuda": "13.0", "cudnn": 91000, "device": "emulated",
        "kernels": {"float32": ["bn_fw_tr_1C11_kernel_NCHW"]},
        "timing": [{"layer": "pw1", "dtype": "float32", "forward_ms": 0.2,
                    "forward_backward_ms": 0.4},
                   {"layer": "extra4", "dtype": "float32", "forward_ms": 0.01,
                    "forward_backward_ms": 0.05}]}))
    clean = "========= ERROR SUMMARY: 0 errors\nexit status: 0\n"
    (out / "sanitizer-memcheck.txt").write_text(clean)
    (out / "sanitizer-synccheck.txt").write_text(clean)
    (out / "sanitizer-racecheck.txt").write_text(
        "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n"
        "exit status: 0\n")
    rc, result, text = report(out)
    summary = result["summary"]
    assert rc == 0 and summary["correct"] and summary["same_bits_across_runs"]
    f32 = summary["per_dtype"]["float32"]
    assert f32["forward_backward_ms"] == pytest.approx(0.53)
    assert f32["ratio_total"] == pytest.approx(0.53 / 0.45)
    assert f32["ratio_max"] == pytest.approx(1.25) and f32["layers_over_target"] == ["pw1"]
    assert f32["large_layers"] == 1  # only pw1 is larger than L2
    assert f32["of_peak_median"] == pytest.approx(10 * big / 0.5e-3 / 4e12)
    assert "| float32 | 2 | 0.53 | 0.45 | 1.18 (MISSED) | 1.25 |" in text

    (out / "sanitizer-memcheck.txt").write_text(
        "========= Invalid __global__ read of size 4 bytes\n"
        "========= ERROR SUMMARY: 3 errors\nexit status: 0\n")
    rc, result, _ = report(out)
    assert rc == 1 and result["summary"]["sanitizers"]["memcheck"]["errors"] == 3
    (out / "sanitizer-memcheck.txt").write_text(clean)
    check["digest"] = "0" * 16  # another run's bits
    (out / "gpu_check_again.json").write_text(json.dumps(check))
    rc, result, _ = report(out)
    assert rc == 1 and result["summary"]["same_bits_across_runs"] is False
