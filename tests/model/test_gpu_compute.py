"""The operator's GPU compute, checked without a GPU.

- Emulated: gpu_compute.cc's host code, unchanged, drives gpu_kernels.cuh compiled by g++ with
  tests/model/csrc/cuda_emulation.h (threads of a block as std::threads, __syncthreads a barrier),
  through an emulated CUDA driver and NVRTC (tests/model/csrc/emulated_driver.cc). Its results are
  compared with the CPU operator (kernels.h) and with NumPy for float16.
- Compiled: the library's own NVRTC call on the kernels, with pip's NVRTC 11.8, then ptxas for
  every GPU generation from Maxwell (sm_50) to Hopper (sm_90).
"""
import ctypes
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ssd_nobias.model import native
from ssd_nobias.model.gpu_sources import write_gpu_sources

pytestmark = [pytest.mark.gpu_emulation, pytest.mark.slow]

TESTS = Path(__file__).parent
DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2}


class Emulation:
    """emu_compute from tests/model/csrc/gpu_emulation.cc, on NumPy arrays."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))

    def run(self, backward: bool, inputs: list, outputs: list, dtype: str, **attrs):
        keys = [k.encode() for k in attrs]
        values = [str(int(v) if isinstance(v, bool) else v).encode() for v in attrs.values()]
        shape = inputs[0].shape if not backward else inputs[2].shape
        error, launches = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(4096)
        ok = self.lib.emu_compute(
            int(backward), len(keys), (ctypes.c_char_p * len(keys))(*keys),
            (ctypes.c_char_p * len(values))(*values), len(shape),
            (ctypes.c_int64 * len(shape))(*shape), DTYPE_CODES.get(dtype, 4),
            (ctypes.c_void_p * len(inputs))(*[a.ctypes.data for a in inputs]),
            (ctypes.c_void_p * len(outputs))(*[a.ctypes.data for a in outputs]),
            error, len(error), launches, len(launches))
        return bool(ok), error.value.decode(), launches.value.decode()


def emulation_build(build: Path, target: Path, *flags: str, sources=()) -> list:
    """The compiler command for gpu_compute.cc + the emulation (+ `sources`) into `target`."""
    write_gpu_sources(build)
    mxnet_dir = Path(mx.__file__).parent
    return [os.environ.get("CXX", "g++"), "-std=c++20", "-O1", "-pthread", *flags,
            f"-I{native.CSRC}", f"-I{TESTS / 'csrc'}", f"-I{mxnet_dir / 'include'}", f"-I{build}",
            *map(str, sources), str(TESTS / "csrc" / "gpu_emulation.cc"),
            str(TESTS / "csrc" / "emulated_driver.cc"),
            str(native.CSRC / "gpu_compute.cc"), str(mxnet_dir / "src" / "lib_api.cc"),
            "-o", str(target), "-ldl"]


@pytest.fixture(scope="module")
def emulation(tmp_path_factory):
    build = tmp_path_factory.mktemp("gpu_emulation")
    target = build / "gpu_emulation.so"
    subprocess.run(emulation_build(build, target, "-fPIC", "-shared"), check=True)
    return Emulation(target)


def test_kernels_have_no_data_race_between_a_blocks_threads(tmp_path):
    """ThreadSanitizer over the emulated kernels: a missing __syncthreads is reported."""
    binary = tmp_path / "emulation_races"
    built = subprocess.run(emulation_build(tmp_path, binary, "-g", "-fsanitize=thread",
                                           "-rdynamic",
                                           sources=[TESTS / "csrc" / "emulation_races.cc"]),
                           capture_output=True, text=True)
    if built.returncode != 0 and "tsan" in built.stderr:
        pytest.skip(f"no ThreadSanitizer runtime for this compiler: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(binary)], capture_output=True, text=True)
    assert "ThreadSanitizer" not in ran.stderr, ran.stderr[:3000]
    assert ran.returncode == 0, ran.stdout + ran.stderr


def param_dtype(dtype):
    return "float32" if dtype == "float16" else dtype


def layer_inputs(shape, dtype, seed=0, train=True):
    """data, gamma, running_mean, running_var, is_train as the operator takes them."""
    rng = np.random.RandomState(seed)
    p = param_dtype(dtype)
    c = shape[1]
    x = rng.normal(0.3, 1.5, shape).astype(dtype)
    return [x, rng.uniform(0.5, 2, c).astype(p), np.zeros(c, p),
            rng.uniform(0.5, 2, c).astype(p), np.array([1.0 if train else 0.0], p)]


def emulated_pass(emulation, inputs, dy, **attrs):
    """Forward then backward on the emulated GPU: y, inv_rms, running_var, dx, dgamma, launches."""
    x, gamma, running_mean, running_var, is_train = [a.copy() for a in inputs]
    dtype, c = x.dtype.name, x.shape[1]
    y, inv_rms = np.full_like(x, np.nan), np.full(c, np.nan, gamma.dtype)
    ok, error, fwd = emulation.run(False, [x, gamma, running_mean, running_var, is_train],
                                   [y, inv_rms], dtype, **attrs)
    assert ok, error
    dx, dgamma = np.full_like(x, np.nan), np.full(c, np.nan, gamma.dtype)
    aux_grads = [np.full(c, np.nan, gamma.dtype), np.full(c, np.nan, gamma.dtype),
                 np.full(1, np.nan, gamma.dtype)]
    ok, error, bwd = emulation.run(True, [dy, np.zeros(c, gamma.dtype), x, gamma, running_mean,
                                          running_var, is_train, y, inv_rms],
                                   [dx, dgamma, *aux_grads], dtype, **attrs)
    assert ok, error
    for grad in aux_grads:
        assert not grad.any(), "the statistics' and the flag's gradients must be zeroed"
    assert running_mean.tobytes() == inputs[2].tobytes()
    return dict(y=y, inv_rms=inv_rms, running_var=running_var, dx=dx, dgamma=dgamma,
                launches=fwd + bwd)


def cpu_pass(inputs, dy, **attrs):
    """The same pass with the CPU operator (kernels.h)."""
    x, gamma, running_mean, running_var, is_train = [mx.nd.array(a, dtype=a.dtype)
                                                    for a in inputs]
    x.attach_grad()
    gamma.attach_grad()
    with autograd.record():
        y, inv_rms = mx.nd.nobias_batch_norm(x, gamma, running_mean, running_var, is_train,
                                             **{k: int(v) if isinstance(v, bool) else v
                                                for k, v in attrs.items()})
    y.backward(mx.nd.array(dy, dtype=dy.dtype))
    return dict(y=y.asnumpy(), inv_rms=inv_rms.asnumpy(), running_var=running_var.asnumpy(),
                dx=x.grad.asnumpy(), dgamma=gamma.grad.asnumpy())


SHAPES = [(1, 1, 1), (2, 3, 9), (2, 3, 17, 19), (3, 2, 5000), (1, 4, 2049)]
SETTINGS = [dict(), dict(relu=True), dict(fix_gamma=True, momentum=0.7),
            dict(use_global_stats=True, relu=True)]


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_emulated_gpu_compute_matches_the_cpu_operator(emulation, dtype, rtol, shape, train,
                                                       settings):
    native.load()
    inputs = layer_inputs(shape, dtype, train=train)
    dy = np.random.RandomState(1).normal(0, 1, shape).astype(dtype)
    got = emulated_pass(emulation, inputs, dy, eps=1e-5, **settings)
    want = cpu_pass(inputs, dy, eps=1e-5, **settings)
    # dx = a * dy - b * x cancels (to 0 for a single value): compare it at the terms' scale
    terms = np.abs(want["inv_rms"]).max() * np.abs(inputs[1]).max() * np.abs(dy).max()
    for key, value in want.items():
        scale = terms if key == "dx" else np.abs(value).max()
        np.testing.assert_allclose(got[key], value, rtol=rtol, atol=rtol * scale, err_msg=key)
    frozen = not train or settings.get("use_global_stats")
    if frozen:  # inference: running_var is read, never written
        assert got["running_var"].tobytes() == inputs[3].tobytes()


def reference(inputs, dy, eps=1e-5, momentum=0.9, relu=False):
    """The layer's training pass in float64 NumPy (nobias_bn.cc's formulas)."""
    x, gamma, _, running_var, _ = [a.astype(np.float64) for a in inputs]
    axes = tuple(i for i in range(x.ndim) if i != 1)
    bc = (1, -1) + (1,) * (x.ndim - 2)
    m2 = (x ** 2).mean(axis=axes)
    r = 1 / np.sqrt(m2 + eps)
    y = gamma.reshape(bc) * r.reshape(bc) * x
    g = dy.astype(np.float64) * (y > 0) if relu else dy.astype(np.float64)
    dot = (g * x).sum(axis=axes)
    count = x.size / x.shape[1]
    dx = (gamma * r).reshape(bc) * g - (gamma * r ** 3 * dot / count).reshape(bc) * x
    return dict(y=np.maximum(y, 0) if relu else y, inv_rms=r, dx=dx, dgamma=r * dot,
                running_var=momentum * running_var + (1 - momentum) * m2)


@pytest.mark.parametrize("shape", [(2, 3, 9), (3, 2, 5000)])
@pytest.mark.parametrize("relu", [False, True])
def test_emulated_float16_data_with_float32_statistics(emulation, shape, relu):
    inputs = layer_inputs(shape, "float16")
    dy = np.random.RandomState(1).normal(0, 1, shape).astype("float16")
    got = emulated_pass(emulation, inputs, dy, relu=relu)
    want = reference(inputs, dy, relu=relu)
    assert got["y"].dtype == np.float16 and got["inv_rms"].dtype == np.float32
    for key in ("inv_rms", "running_var", "dgamma"):  # float32, sums in double
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
    for key in ("y", "dx"):  # float16: within a few of its ulps (2**-11 relative)
        np.testing.assert_allclose(got[key], want[key], rtol=2e-3,
                                   atol=2e-3 * np.abs(want[key]).max(), err_msg=key)


def test_emulated_launches_cover_each_run_in_blocks_of_one_channel(emulation):
    inputs = layer_inputs((3, 2, 5000), "float32")
    got = emulated_pass(emulation, inputs, np.ones((3, 2, 5000), "float32"))
    # 5000 values a run, 2048 a block of 256 threads: 3 blocks a run, 6 runs; one thread a channel
    assert got["launches"].split(";")[:-1] == [
        "nobias_forward_dots_f32:18x256", "nobias_finalize_forward_f32:1x256",
        "nobias_scale_f32:18x256", "nobias_backward_dots_f32:18x256",
        "nobias_finalize_backward_f32:1x256", "nobias_input_grad_f32:18x256"]


def test_emulated_compute_runs_in_each_devices_context_and_loads_its_module_once(emulation):
    """Several GPUs: the arrays' device decides the context; a module is loaded per context."""
    inputs = layer_inputs((2, 3, 9), "float32")
    dy = np.ones((2, 3, 9), "float32")
    want = emulated_pass(emulation, inputs, dy)
    lib = emulation.lib
    try:
        # (arrays on, context current on the calling thread) -> (primary retains, module loads)
        for (device, current), counts in [((2, 0), (1, 1)), ((2, 2), (0, 0)), ((3, -1), (1, 1)),
                                          ((2, 3), (1, 0))]:
            lib.emu_reset(device, current)
            got = emulated_pass(emulation, inputs, dy)
            assert (lib.emu_primary_retains(), lib.emu_module_loads()) == counts
            for key in ("y", "dx", "dgamma", "running_var"):
                assert got[key].tobytes() == want[key].tobytes()
    finally:
        lib.emu_reset(0, 0)


def test_kernels_compile_for_each_devices_own_architecture(emulation, monkeypatch):
    """PTX for the device's compute capability (compute_50 the floor), an override by
    SSD_NOBIAS_CUDA_ARCH, and NVRTC's refusal named with the architecture it refused."""
    lib = emulation.lib
    for name in ("emu_compiled_archs", "emu_arch_for", "emu_kernel_compile_error"):
        getattr(lib, name).restype = ctypes.c_char_p
    inputs = layer_inputs((2, 3, 9), "float32")
    dy = np.ones((2, 3, 9), "float32")
    x, gamma, mean, var, is_train = [a.copy() for a in inputs]
    forward = ([x, gamma, mean, var, is_train], [np.empty_like(x), np.empty(3, "float32")])
    monkeypatch.delenv("SSD_NOBIAS_CUDA_ARCH", raising=False)
    try:
        for capability, arch in ((90, b"compute_90"), (87, b"compute_87"), (37, b"compute_50")):
            lib.emu_set_devices(capability, b"compute_50" if capability > 50 else b"")
            assert lib.emu_arch_for(0) == arch
            emulated_pass(emulation, inputs, dy)  # compiles for it (once per process)
            assert b";" + arch + b";" in lib.emu_compiled_archs()
            assert lib.emu_kernel_compile_error() == b""
        monkeypatch.setenv("SSD_NOBIAS_CUDA_ARCH", "compute_80")
        assert lib.emu_arch_for(0) == b"compute_80"
        emulated_pass(emulation, inputs, dy)
        assert b";compute_80;" in lib.emu_compiled_archs()
        lib.emu_set_devices(90, b"compute_75")
        monkeypatch.setenv("SSD_NOBIAS_CUDA_ARCH", "compute_75")
        ok, error, _ = emulation.run(False, *forward, "float32")
        assert not ok
        assert "compiling the nobias_batch_norm GPU kernels for compute_75 with NVRTC failed" \
            in error and "invalid value for --gpu-architecture" in error
        assert b"for compute_75" in lib.emu_kernel_compile_error()
    finally:
        lib.emu_set_devices(50, b"")


def test_frozen_statistics_need_no_sums_in_the_forward_pass(emulation):
    inputs = layer_inputs((3, 2, 5000), "float32")
    got = emulated_pass(emulation, inputs, np.ones((3, 2, 5000), "float32"),
                        use_global_stats=True)
    assert got["launches"].split(";")[:3] == ["nobias_finalize_forward_f32:1x256",
                                              "nobias_scale_f32:18x256",
                                              "nobias_backward_dots_f32:18x256"]


def test_emulated_gpu_compute_refuses_other_dtypes(emulation):
    x = np.ones((2, 3, 4), np.int32)
    params = [np.ones(3, np.int32) for _ in range(3)] + [np.ones(1, np.int32)]
    ok, error, launches = emulation.run(False, [x, *params], [np.empty_like(x), params[0]],
                                        "int32")
    assert not ok and "float16, float32 or float64" in error and launches == ""


# ---- NVRTC and ptxas: the kernels as the library compiles them -----------------------------

def pip_cuda_tool(package: str, relative: str):
    """A file of an installed nvidia-* wheel (make setup installs them on Linux x86-64)."""
    try:
        module = importlib.import_module(f"nvidia.{package}")
    except ImportError:
        return None
    path = Path(list(module.__path__)[0]) / relative
    return path if path.exists() else None


NVRTC = pip_cuda_tool("cuda_nvrtc", "lib/libnvrtc.so.11.2")
PTXAS = pip_cuda_tool("cuda_nvcc", "bin/ptxas")
needs_nvrtc = pytest.mark.skipif(NVRTC is None or PTXAS is None,
                                 reason="nvidia-cuda-nvrtc-cu11 / nvidia-cuda-nvcc-cu11 are not "
                                        "installed (make setup installs them on Linux x86-64)")
ENTRIES = {f"nobias_{kernel}_{dtype}" for kernel in (
    "forward_dots", "finalize_forward", "scale", "backward_dots", "finalize_backward",
    "input_grad") for dtype in ("f16", "f32", "f64")}
# sm_50 Maxwell, 60 Pascal, 70 Volta, 75 Turing, 80/86 Ampere, 89 Ada, 90 Hopper
ARCHS = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90")


def compile_in_fresh_process(nvrtc: Path, archs: list, out: Path) -> dict:
    """{arch: (ok, PTX or NVRTC's reason)}: the library's kernels compiled by its own code
    (nobias_gpu_ptx) with the NVRTC `nvrtc`, in a fresh process (the library looks NVRTC up
    once, among the libraries already loaded); arch None is the library's own."""
    code = ("import ctypes, sys\n"
            f"ctypes.CDLL({str(nvrtc)!r}, mode=ctypes.RTLD_GLOBAL)\n"
            "from ssd_nobias.model import native\n"
            "lib = ctypes.CDLL(str(native.load()))\n"
            "lib.nobias_gpu_ptx.restype = ctypes.c_char_p\n"
            f"for i, arch in enumerate({archs!r}):\n"
            "    ok = ctypes.c_int()\n"
            "    text = lib.nobias_gpu_ptx(arch and arch.encode(), ctypes.byref(ok))\n"
            f"    open({str(out)!r} + '/%d.txt' % i, 'wb').write(text + b'\\n%d' % ok.value)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    results = {}
    for i, arch in enumerate(archs):
        text, ok = (out / f"{i}.txt").read_text().rsplit("\n", 1)
        results[arch] = (ok == "1", text)
    return results


@pytest.fixture(scope="module")
def library_ptx(tmp_path_factory):
    """The kernels compiled with pip's NVRTC 11.8 for the library's own architecture
    (kernels.ptx) and for an invalid one (invalid.txt: the error text)."""
    out = tmp_path_factory.mktemp("ptx")
    compiled = compile_in_fresh_process(NVRTC, [None, "compute_1"], out)
    ok, text = compiled[None]
    assert ok, text
    (out / "kernels.ptx").write_text(text)
    (out / "invalid.txt").write_text("%s\n%d" % (compiled["compute_1"][1],
                                                  compiled["compute_1"][0]))
    return out


@needs_nvrtc
def test_nvrtc_compiles_every_kernel_entry(library_ptx):
    ptx = (library_ptx / "kernels.ptx").read_text()
    assert ".target sm_50" in ptx
    assert set(re.findall(r"\.entry\s+(\w+)\(", ptx)) == ENTRIES


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
def test_ptxas_assembles_the_kernels_without_spills(library_ptx, tmp_path, arch):
    """What the driver does with the PTX on a GPU of each generation."""
    result = subprocess.run([str(PTXAS), f"-arch={arch}", "-v", str(library_ptx / "kernels.ptx"),
                             "-o",
                             str(tmp_path / "kernels.cubin")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = result.stderr
    assert len(re.findall(r"Compiling entry function '(\w+)'", info)) == len(ENTRIES)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    assert len(spills) == len(ENTRIES) and set(spills) == {("0", "0")}
    registers = [int(n) for n in re.findall(r"Used (\d+) registers", info)]
    assert len(registers) == len(ENTRIES) and max(registers) <= 64  # 256 threads stay resident


NVRTC13 = pip_cuda_tool("cu13", "lib/libnvrtc.so.13")


@pytest.mark.skipif(NVRTC13 is None, reason="nvidia-cuda-nvrtc 13 is not installed (make setup "
                                            "installs it on Linux x86-64)")
def test_cuda13_nvrtc_compiles_for_turing_to_blackwell_and_refuses_maxwell(tmp_path):
    """NVRTC of CUDA 13, as a machine with a new GPU has it: the library's floor, compute_50,
    is refused, and Volta's (hence PTX for each device's own architecture); Turing to
    Blackwell compile."""
    archs = ["compute_50", "compute_70", "compute_75", "compute_80", "compute_86", "compute_89",
             "compute_90", "compute_100", "compute_120"]
    compiled = compile_in_fresh_process(NVRTC13, archs, tmp_path)
    for arch in archs[:2]:  # Maxwell, Volta
        ok, reason = compiled[arch]
        assert not ok and "invalid value for --gpu-architecture" in reason
    for arch in archs[2:]:
        ok, ptx = compiled[arch]
        assert ok, ptx
        assert f".target sm_{arch.split('_')[1]}" in ptx
        assert set(re.findall(r"\.entry\s+(\w+)\(", ptx)) == ENTRIES


@needs_nvrtc
def test_nvrtc_failures_come_back_with_nvrtc_reason(library_ptx):
    text, ok = (library_ptx / "invalid.txt").read_text().rsplit("\n", 1)
    assert ok == "0" and "NVRTC_ERROR_INVALID_OPTION" in text


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_library_needs_no_cuda_library():
    """It loads in MXNet's CPU wheel: libcuda and libnvrtc are looked up at run time only."""
    dynamic = subprocess.run(["readelf", "-d", str(native.load())], capture_output=True,
                             text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)
    assert "libmxnet.so" in needed
    assert not [lib for lib in needed if re.match(r"lib(cuda|cudart|nvrtc)", lib)]


def test_gpu_error_says_why_there_is_no_gpu_compute():
    reason = native.gpu_error()
    if not mx.runtime.Features().is_enabled("CUDA"):
        assert reason == "this MXNet is a CPU build"
    elif mx.context.num_gpus() == 0:  # the CUDA build on a machine without a GPU
        assert reason.startswith("CUDA driver: ")
    else:
        assert reason is None
