"""Build and load the compiled `nobias_batch_norm` operator (csrc/).

nobias_bn.cc registers the operator through MXNet's extension interface (lib_api), whose CPU
compute sees plain NCHW only. mkldnn_layouts.cc computes on MXNet's own arrays, in the MKLDNN
blocked layouts its convolutions produce, and install.cc puts it in place of the lib_api compute
(see the notes in those files). The GPU compute (gpu_compute.cc) carries its kernels'
source and compiles it with NVRTC when it first runs, so building needs no CUDA. The library is compiled once per source, MXNet version and CPU
against the headers inside the mxnet wheel, linked to its libmxnet.so, cached under
`ssd_nobias/_build/` (or $SSD_NOBIAS_BUILD_DIR) and loaded with `mx.library.load`.
`python -m ssd_nobias.model.native` builds it ahead of time (`make setup`).

$SSD_NOBIAS_PLAIN_LAYOUT=1 keeps the lib_api compute (bench/bn_overhead.py compares the two).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import mxnet as mx

from ssd_nobias.errors import UserError
from ssd_nobias.model.gpu_sources import write_gpu_sources

CSRC = Path(__file__).parent.parent / "csrc"
SOURCES = ("kernels.h", "operator_io.h", "nobias_bn.cc", "mkldnn_layouts.h", "mkldnn_layouts.cc",
           "install.cc", "gpu_args.h", "gpu_api.h", "gpu_kernels.cuh", "gpu_compute.h", "gpu_compute.cc",
           "gpu_system.cc")
MXNET_VERSION = "1.9.1"  # mkldnn_layouts.cc and install.cc use this build's C++ ABI
COMMON = ("-std=c++14", "-fopenmp", "-fPIC", "-march=native", "-D_GLIBCXX_USE_CXX11_ABI=0")
# The wheel's libmxnet.so: built with GCC 4.8, MKLDNN on, no CUDA, no MKL.
MXNET_DEFINES = ("-DMXNET_USE_MKLDNN=1", "-DMXNET_USE_CUDA=0", "-DMSHADOW_USE_CUDA=0",
                 "-DMSHADOW_USE_MKL=0", "-DMSHADOW_USE_CBLAS=0", "-DDMLC_USE_CXX11=1",
                 "-Wno-deprecated-declarations")
PLAIN_LAYOUT_ENV = "SSD_NOBIAS_PLAIN_LAYOUT"


class NativeUnavailable(UserError, RuntimeError):
    """The compiled operator cannot be built or loaded here, or cannot run on a context: the
    message says what to install or which implementation to choose instead."""


def _cuda_build() -> bool:
    return mx.runtime.Features().is_enabled("CUDA")


def _mxnet_dir() -> Path:
    return Path(mx.__file__).parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path() -> Path:
    """Where the library for this source, MXNet and CPU lives once built."""
    key = hashlib.sha256()
    parts = [(CSRC / name).read_bytes() for name in SOURCES]
    parts += [mx.__version__.encode(), " ".join(COMMON + MXNET_DEFINES).encode(),
              _cpu_model().encode(), f"cuda={_cuda_build()}".encode()]
    for part in parts:
        key.update(part)
    return build_dir() / f"nobias_bn-{key.hexdigest()[:16]}.so"


def build_dir() -> Path:
    """Where the library is built: $SSD_NOBIAS_BUILD_DIR, else the package's _build folder, or
    the user's cache when the package is installed where this user cannot write."""
    if os.environ.get("SSD_NOBIAS_BUILD_DIR"):
        return Path(os.environ["SSD_NOBIAS_BUILD_DIR"]).absolute()
    package = Path(__file__).parent.parent
    if os.access(package, os.W_OK):
        return package / "_build"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "ssd_nobias" / "build").absolute()  # mx.library.load needs an absolute path


def _compile_commands(cxx: str, output: Path, workdir: Path) -> tuple:
    """Compiler command lines: one per source (to objects in `workdir`), and the link."""
    mxnet_dir = _mxnet_dir()
    include = mxnet_dir / "include"
    internal = (*COMMON, *MXNET_DEFINES, f"-I{include}", f"-I{include / 'mkldnn'}")
    objects = {name: workdir / (name + ".o") for name in
               ("nobias_bn.cc", "lib_api.cc", "mkldnn_layouts.cc", "install.cc",
                "gpu_compute.cc", "gpu_system.cc")}
    write_gpu_sources(workdir)
    compile_flags = {
        "nobias_bn.cc": (*COMMON, "-O3", f"-I{include}"),
        "lib_api.cc": (*COMMON, "-O3", f"-I{include}"),
        "gpu_compute.cc": (*COMMON, "-O2", f"-I{include}", f"-I{workdir}"),
        "gpu_system.cc": (*COMMON, "-O2", f"-I{include}"),
        "mkldnn_layouts.cc": (*internal, "-O3"),
        "install.cc": (*internal, "-O0"),  # see the note in install.cc
    }
    sources = {name: CSRC / name for name in compile_flags}
    sources["lib_api.cc"] = mxnet_dir / "src" / "lib_api.cc"
    compiles = [[cxx, *compile_flags[name], "-c", str(sources[name]), "-o", str(objects[name])]
                for name in compile_flags]
    link = [cxx, "-shared", "-fopenmp", *map(str, objects.values()), "-o", str(output),
            f"-L{mxnet_dir}", "-l:libmxnet.so", f"-Wl,-rpath,{mxnet_dir}", "-ldl", "-Wl,--no-undefined"]
    return compiles, link


def _run(commands: list) -> None:
    """Run compiler commands side by side; raise with the output of the first that failed."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    errors = [proc.communicate()[1] for proc in procs]  # wait for all before raising
    for cmd, proc, stderr in zip(commands, procs, errors):
        if proc.returncode != 0:
            raise NativeUnavailable(f"compiling the NoBiasBatchNorm operator failed:\n"
                                    f"{' '.join(cmd)}\n{stderr}")


def build(force: bool = False) -> Path:
    """Compile the operator library unless an up-to-date one exists; return its path."""
    if mx.__version__ != MXNET_VERSION:
        raise NativeUnavailable(f"the NoBiasBatchNorm operator is built for mxnet "
                                f"{MXNET_VERSION}, found {mx.__version__}: install the pinned "
                                f"version (make setup)")
    target = library_path()
    if target.exists() and not force:
        return target
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise NativeUnavailable(
            f"building the NoBiasBatchNorm operator needs a C++ compiler; '{cxx}' was not found "
            "(install g++ or set CXX)")
    # the first command of a new install spends a minute here: say so before, and when done
    print(f"ssd_nobias: building the NoBiasBatchNorm operator for this CPU and MXNet, once "
          f"({cxx} -march=native, about a minute on 2 cores) ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as workdir:
            tmp = Path(workdir) / target.name
            compiles, link = _compile_commands(cxx, tmp, Path(workdir))
            _run(compiles)
            _run([link])
            os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
    except OSError as err:
        raise NativeUnavailable(f"cannot build the NoBiasBatchNorm operator in {target.parent}: "
                                f"{err.strerror or err} (set SSD_NOBIAS_BUILD_DIR to a writable "
                                f"folder)") from None
    print(f"ssd_nobias: built {target} in {time.monotonic() - start:.0f} s", file=sys.stderr,
          flush=True)
    return target


@functools.lru_cache(maxsize=None)
def load() -> Path:
    """Make `nobias_batch_norm` available to mx.nd and mx.sym (idempotent)."""
    path = build()
    from mxnet.contrib.amp import amp
    if amp._amp_initialized:  # pylint: disable=protected-access
        raise NativeUnavailable(
            "mxnet.contrib.amp.init() ran before the NoBiasBatchNorm operator library was "
            "loaded; loading it re-creates every MXNet operator function and would silently "
            "turn AMP off. Build the model (or call ssd_nobias.model.native.load()) before "
            "amp.init()")
    mx.library.load(str(path), verbose=False)
    if not lib_api_only():
        if ctypes.CDLL(str(path)).nobias_bn_use_mkldnn_layouts() != 0:
            raise RuntimeError(f"{path.name}: MXNet refused the MKLDNN compute for nobias_batch_norm")
    return path


@functools.lru_cache(maxsize=None)
def try_load() -> Optional[str]:
    """load(); None if the operator is available, else why not (asked once per process)."""
    try:
        load()
    except NativeUnavailable as err:
        return str(err)
    return None


@functools.lru_cache(maxsize=None)
def gpu_error() -> Optional[str]:
    """Why the operator's GPU compute cannot run in this process; None if it can.

    It runs with MXNet's CUDA build (mxnet-cu11x), whose libcuda and libnvrtc it uses: it
    compiles its kernels with NVRTC at the first GPU call (gpu_compute.cc). Asked once.
    """
    error = try_load()
    if error is not None:
        return error
    if not _cuda_build():
        return "this MXNet is a CPU build"
    lib = ctypes.CDLL(str(load()))
    lib.nobias_gpu_unavailable.restype = ctypes.c_char_p
    return lib.nobias_gpu_unavailable().decode() or None


def lib_api_only() -> bool:
    """Whether the operator runs lib_api's compute, which is given no `req` (see model/norm.py)."""
    return os.environ.get(PLAIN_LAYOUT_ENV, "0") == "1"


LAYOUTS = ("plain", "nChw8c", "nChw16c", "reordered")


def layout_reads() -> dict:
    """How many activations the operator has read in each layout since the library was loaded."""
    counts = (ctypes.c_int64 * len(LAYOUTS))()
    ctypes.CDLL(str(load())).nobias_bn_layout_reads(counts)
    return dict(zip(LAYOUTS, counts))


if __name__ == "__main__":
    print(f"nobias_batch_norm operator: {load()}")
