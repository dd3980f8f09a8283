"""gpu_sources.inc: the GPU kernels' source files as C++ raw strings, which gpu_compute.cc hands
to NVRTC. Standard library only: the GPU check (tools/gpu_check) runs it where MXNet is absent.

    python ssd_nobias/model/gpu_sources.py DIRECTORY
"""
import sys
from pathlib import Path

CSRC = Path(__file__).parent.parent / "csrc"
# Embedded under these C++ names.
GPU_SOURCES = {"kKernelSource": "gpu_kernels.cuh", "kArgsSource": "gpu_args.h"}


def write_gpu_sources(directory: Path) -> Path:
    """Write DIRECTORY/gpu_sources.inc and return its path."""
    lines = []
    for name, source in GPU_SOURCES.items():
        text = (CSRC / source).read_text()
        if ')nobias_src"' in text:
            raise RuntimeError(f"{source} contains the raw-string delimiter")
        lines.append(f'static const char {name}[] = R"nobias_src({text})nobias_src";\n')
    path = Path(directory) / "gpu_sources.inc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    print(write_gpu_sources(Path(sys.argv[1])))
