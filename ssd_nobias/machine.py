"""The CPU a run or benchmark is on: its model, vector width and OpenMP threads.

MKLDNN's layouts (nChw8c on AVX2, nChw16c on AVX-512) and INT8 speed (VNNI) depend on it, so
every figure names it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    avx2: bool
    avx512: bool
    vnni: bool  # AVX-512 VNNI or AVX-VNNI: int8 dot products summed straight into int32
    amx: bool = False
    avx_vnni: bool = False  # the AVX2-width VNNI alone (oneDNN's AVX2_VNNI uses it)

    @property
    def vector_width(self) -> str:
        """'AVX-512 with VNNI', 'AVX-512', 'AVX2' or 'below AVX2'."""
        if self.avx512:
            if self.amx:
                return "AVX-512 with VNNI and AMX"
            return "AVX-512 with VNNI" if self.vnni else "AVX-512 (no VNNI)"
        if self.avx2:
            return "AVX2 with AVX-VNNI" if self.vnni else "AVX2"
        return "below AVX2"

    def describe(self) -> str:
        return f"{self.model}, {self.cores} cores, {self.vector_width}"

    def record(self) -> dict:
        """What a study records with every run: AVX-512 makes MKLDNN use nChw16c, another
        rounding order than AVX2's nChw8c; VNNI and AMX decide whether INT8 is exact."""
        return {"model": self.model, "cores": self.cores, "avx512": self.avx512,
                "vnni": self.vnni, "amx": self.amx}


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> CpuInfo:
    """What /proc/cpuinfo says of the first core (unknown fields: false)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        text = ""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return CpuInfo(model=fields.get("model name", "unknown"), cores=os.cpu_count() or 1,
                   avx2="avx2" in flags, avx512="avx512f" in flags,
                   vnni="avx512_vnni" in flags or "avx_vnni" in flags,
                   amx="amx_int8" in flags, avx_vnni="avx_vnni" in flags)


# oneDNN's ONEDNN_MAX_CPU_ISA values whose int8 convolutions have no VNNI (vpmaddubsw pairs).
ONEDNN_WITHOUT_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def expected_int8_kernels(runtime: str, cpu: Optional[CpuInfo] = None,
                          environ: Optional[dict] = None) -> str:
    """How the CPU's flags say `runtime` ('onnxruntime', 'openvino' or 'integer') computes
    uint8 x int8 dot products: 'exact' with VNNI or AMX (the integer reference always), else
    the runtime's name, the pair-saturating kernels runtime/integer.py emulates. OpenVINO's
    oneDNN obeys ONEDNN_MAX_CPU_ISA; ONNX Runtime picks from CPUID alone.
    runtime/kernels.py measures it instead."""
    if runtime == "integer":
        return "exact"
    if runtime not in ("onnxruntime", "openvino"):
        raise ValueError(f"unknown runtime {runtime!r}")
    cpu = cpu_info() if cpu is None else cpu
    exact = cpu.vnni or cpu.amx
    if runtime == "openvino":
        environ = os.environ if environ is None else environ
        cap = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        if cap in ONEDNN_WITHOUT_VNNI:
            exact = False
        elif cap.startswith("AVX2_VNNI"):
            exact = cpu.avx_vnni
    return "exact" if exact else runtime


def omp_threads(environ: Optional[dict] = None) -> str:
    """OpenMP threads MXNet's operators use: OMP_NUM_THREADS, or MXNet's own default."""
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS")
    return value if value else "unset (MXNet's default)"
