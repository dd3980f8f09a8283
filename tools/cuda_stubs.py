"""Stand-in CUDA libraries under which MXNet's CUDA build imports on a machine with no GPU.

libmxnet.so of mxnet-cu11x links cuDNN, cuBLAS, cuSOLVER, cuFFT, cuRAND, NCCL, NVTX and the
driver. For each of those it names, this writes a library of the same soname that defines the
functions libmxnet.so takes from it, each returning an error code (with the symbol versions
libmxnet.so asks for). The CUDA runtime and NVRTC are the real ones (pip wheels): the runtime
finds no driver and MXNet sees no GPU, as on any machine without one.

    python tools/cuda_stubs.py PATH/TO/libmxnet.so OUT_DIR
"""
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REAL = {"libcudart.so.11.0", "libnvrtc.so.11.2"}  # from pip: nvidia-cuda-runtime/nvrtc-cu11
# driver functions ssd_nobias's GPU compute looks up (csrc/gpu_system.cc) beyond MXNet's own
DRIVER_EXTRA = ["cuInit", "cuCtxGetCurrent", "cuCtxSetCurrent", "cuCtxGetDevice",
                "cuMemsetD8Async"]
STUBBED = re.compile(r"lib(cuda|cudnn|cublas|cusolver|cufft|curand|nccl|nvToolsExt)\.so")


def needed(library: Path) -> list:
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True,
                             check=True).stdout
    return re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)


def undefined(library: Path) -> dict:
    """version node (or '' for unversioned) -> the undefined function names bound to it."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True,
                         text=True, check=True).stdout
    by_version = defaultdict(list)
    for line in out.splitlines():
        name, _, version = line.split()[-1].partition("@")
        by_version[version].append(name)
    return by_version


def write_stub(out: Path, soname: str, names: list, version: str) -> None:
    source = out / f"{soname}.c"
    source.write_text("".join(f"int {name}(void) {{ return 1; }}\n" for name in names))
    flags = []
    if version:
        script = out / f"{soname}.map"
        script.write_text(f"{version} {{ global: {'; '.join(names)}; local: *; }};\n")
        flags = [f"-Wl,--version-script={script}"]
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", *flags, str(source),
                    "-o", str(out / soname)], check=True)


def main(library: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    symbols = undefined(Path(library))
    stubs = [lib for lib in needed(Path(library)) if STUBBED.match(lib) and lib not in REAL]
    for soname in stubs:
        names = symbols.get(soname, [])
        if names:  # versioned: the version node is the soname
            write_stub(out, soname, names, soname)
        else:  # unversioned (the driver: cuXxx, NCCL: ncclXxx): the functions named after it
            pattern = {"libcuda.so.1": r"cu[A-Z]", "libnccl.so.2": r"nccl[A-Z]"}[soname]
            unversioned = [n for n in symbols[""] if re.match(pattern, n)]
            extra = DRIVER_EXTRA if soname == "libcuda.so.1" else []
            write_stub(out, soname, sorted(set(unversioned + extra)), "")
    print(f"{len(stubs)} stand-in libraries in {out}: {', '.join(stubs)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
