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
    vnni: bool

    @property
    def vector_width(self) -> str:
        """'AVX-512 with VNNI', 'AVX-512', 'AVX2' or 'below AVX2'."""
        if self.avx512:
            return "AVX-512 with VNNI" if self.vnni else "AVX-512 (no VNNI)"
        return "AVX2" if self.avx2 else "below AVX2"

    def describe(self) -> str:
        return f"{self.model}, {self.cores} cores, {self.vector_width}"

    def record(self) -> dict:
        """What a study records with every run: AVX-512 makes MKLDNN use nChw16c, another
        rounding order than AVX2's nChw8c."""
        return {"model": self.model, "cores": self.cores, "avx512": self.avx512,
                "vnni": self.vnni}


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
                   vnni="avx512_vnni" in flags or "avx_vnni" in flags)


def omp_threads(environ: Optional[dict] = None) -> str:
    """OpenMP threads MXNet's operators use: OMP_NUM_THREADS, or MXNet's own default."""
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS")
    return value if value else "unset (MXNet's default)"
