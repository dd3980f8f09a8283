"""Build and load the compiled `nobias_batch_norm` operator (csrc/nobias_bn.cc).

The operator is compiled once per source, MXNet version and CPU against the headers that ship
inside the mxnet wheel, cached under `ssd_nobias/_build/` (or $SSD_NOBIAS_BUILD_DIR), and loaded
with `mx.library.load`. `python -m ssd_nobias.native` builds it ahead of time (`make setup`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import mxnet as mx

SOURCE = Path(__file__).with_name("csrc") / "nobias_bn.cc"
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")


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
    for part in (SOURCE.read_bytes(), mx.__version__.encode(), " ".join(CXXFLAGS).encode(),
                 _cpu_model().encode()):
        key.update(part)
    root = Path(os.environ.get("SSD_NOBIAS_BUILD_DIR", Path(__file__).with_name("_build")))
    return root / f"nobias_bn-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the operator library unless an up-to-date one exists; return its path."""
    target = library_path()
    if target.exists() and not force:
        return target
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(
            f"building the NoBiasBatchNorm operator needs a C++ compiler; '{cxx}' was not found "
            "(install g++ or set CXX)")
    mxnet_dir = _mxnet_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [cxx, *CXXFLAGS, f"-I{mxnet_dir / 'include'}", str(SOURCE),
           str(mxnet_dir / "src" / "lib_api.cc"), "-o", tmp]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"compiling {SOURCE.name} failed:\n{' '.join(cmd)}\n{result.stderr}")
    os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
    return target


@functools.lru_cache(maxsize=None)
def load() -> Path:
    """Make `nobias_batch_norm` available to mx.nd and mx.sym (idempotent)."""
    path = build()
    mx.library.load(str(path), verbose=False)
    return path


if __name__ == "__main__":
    print(f"nobias_batch_norm operator: {load()}")
