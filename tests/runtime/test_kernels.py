"""runtime/kernels.py: which INT8 kernels each runtime uses here, measured by one convolution
whose pair of products overflows int16; the measurement agrees with what the CPU's flags
predict, and OpenVINO held to AVX2 by ONEDNN_MAX_CPU_ISA saturates on any CPU."""
import os
import subprocess
import sys

import pytest

from ssd_nobias.machine import cpu_info, expected_int8_kernels
from ssd_nobias.runtime import kernels
from ssd_nobias.runtime.kernels import int8_kernels, int8_verdict

pytest.importorskip("onnxruntime")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_probe_agrees_with_the_cpus_flags(runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    assert int8_kernels(runtime) == expected_int8_kernels(runtime)
    line = int8_verdict(runtime)
    exact = int8_kernels(runtime) == "exact"
    assert line.startswith(f"INT8: {runtime} is {'' if exact else 'not '}exact on this CPU")
    assert exact or line.endswith("--runtime integer gives what an integer accelerator computes")


def test_openvino_held_to_avx2_saturates_pairs_on_any_cpu():
    pytest.importorskip("openvino")
    code = ("from ssd_nobias.runtime.kernels import int8_kernels, int8_verdict; "
            "print(int8_kernels('openvino')); print(int8_verdict('openvino'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert done.returncode == 0, done.stderr
    kind, line = done.stdout.splitlines()
    assert kind == "openvino" and "is not exact on this CPU" in line
    assert expected_int8_kernels("openvino", cpu_info(), {"ONEDNN_MAX_CPU_ISA": "AVX2"}) == \
        "openvino"


def test_a_probe_result_that_is_neither_is_an_error():
    assert kernels._verdict(256 * 253, "onnxruntime") == "exact"
    assert kernels._verdict(256 * 128, "onnxruntime") == "onnxruntime"
    with pytest.raises(RuntimeError, match="neither the exact 64770 nor the saturated 32767"):
        kernels._verdict(256 * 200, "onnxruntime")
    assert int8_kernels("integer") == "exact"
    assert "whatever this CPU is" in int8_verdict("openvino-novnni")
