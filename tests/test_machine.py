"""machine: what /proc/cpuinfo says of the vector width every figure names, and what a study
records of it."""
import os

import pytest

from ssd_nobias.machine import cpu_info, expected_int8_kernels, omp_threads

AVX2 = "processor\t: 0\nmodel name\t: Intel Xeon E5\nflags\t\t: fpu sse avx avx2 fma\n"
VNNI = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: avx2 avx512f avx512_vnni\n"
        "processor\t: 1\nmodel name\t: other core\nflags\t\t: avx2\n")


@pytest.mark.parametrize("text, width, avx512, vnni", [
    (AVX2, "AVX2", False, False),
    (VNNI, "AVX-512 with VNNI", True, True),
    (AVX2.replace("avx2 fma", "avx2 fma avx512f"), "AVX-512 (no VNNI)", True, False),
    ("", "below AVX2", False, False),
])
def test_vector_width_from_the_first_cores_flags(tmp_path, text, width, avx512, vnni):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    info = cpu_info(str(path))
    assert info.vector_width == width
    assert info.record() == {"model": info.model, "cores": os.cpu_count(), "avx512": avx512,
                             "vnni": vnni, "amx": False}


def test_a_missing_cpuinfo_reads_as_unknown(tmp_path):
    info = cpu_info(str(tmp_path / "none"))
    assert info.model == "unknown" and info.vector_width == "below AVX2"


def test_the_first_core_is_the_one_described(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(VNNI)
    assert cpu_info(str(path)).describe() == f"AMD EPYC, {os.cpu_count()} cores, " \
        "AVX-512 with VNNI"


def test_omp_threads():
    assert omp_threads({"OMP_NUM_THREADS": "2"}) == "2"
    assert omp_threads({}) == "unset (MXNet's default)"


AMX = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: avx2 avx512f avx512_vnni amx_int8\n"
ALDER = "processor\t: 0\nmodel name\t: Core\nflags\t\t: avx2 avx_vnni\n"
ICE = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: avx2 avx512f avx512_vnni\n"
SKYLAKE = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: avx2 avx512f\n"


@pytest.mark.parametrize("text, cap, onnxruntime, openvino", [
    (AVX2, "", "onnxruntime", "openvino"),
    (SKYLAKE, "", "onnxruntime", "openvino"),
    (ICE, "", "exact", "exact"),
    (ICE, "avx2", "exact", "openvino"),  # oneDNN held to AVX2; ONNX Runtime ignores it
    (ICE, "AVX512_CORE", "exact", "openvino"),
    (ICE, "AVX2_VNNI", "exact", "openvino"),  # no AVX-VNNI on this CPU: AVX2's kernels
    (ALDER, "AVX2_VNNI", "exact", "exact"),
    (AMX, "", "exact", "exact"),
    (AMX, "AVX512_CORE_AMX", "exact", "exact"),
])
def test_which_runtimes_compute_int8_exactly(tmp_path, text, cap, onnxruntime, openvino):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    cpu, env = cpu_info(str(path)), {"ONEDNN_MAX_CPU_ISA": cap} if cap else {}
    assert expected_int8_kernels("onnxruntime", cpu, env) == onnxruntime
    assert expected_int8_kernels("openvino", cpu, env) == openvino
    assert expected_int8_kernels("integer", cpu, env) == "exact"
