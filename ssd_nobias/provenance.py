"""What produced a result: the model (its file's path and sha256, what kind of model, the
runtime that ran it) and the machine (device, CPU, package version). Every result file carries
it, so that two eval.json files of one model on two runtimes, or of two checkpoints, are told
apart without the folder they sit in."""
from __future__ import annotations

import hashlib
import os
import time
from typing import Optional, Sequence

from ssd_nobias.atomic import sha256
from ssd_nobias.machine import cpu_info


def version() -> str:
    """The installed distribution's version."""
    from importlib import metadata

    try:
        return metadata.version("ssd_nobias")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def fingerprint(path: str) -> str:
    """sha256 of a file; of a folder, over every file's relative path and sha256 (sorted)."""
    if not os.path.isdir(path):
        return sha256(path)
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            digest.update(f"{os.path.relpath(full, path)}\0{sha256(full)}\n".encode())
    return digest.hexdigest()


def model_source(params: Optional[str] = None, deploy: Optional[str] = None,
                 onnx: Optional[str] = None, accelerator: Optional[str] = None,
                 int8: bool = False, runtime: str = "onnxruntime") -> dict:
    """The model one of the four model options names: path (absolute), kind and the runtime
    that runs it (MXNet for a checkpoint or deploy graph). Its hash is taken by provenance(),
    when a result is written, not each time a model is opened."""
    given = [(kind, path) for kind, path in (("params", params), ("deploy", deploy),
                                             ("onnx", onnx), ("accelerator", accelerator))
             if path]
    if len(given) != 1:
        raise ValueError(f"one model, not {len(given)}")
    kind, path = given[0]
    if kind == "accelerator" and int8:
        kind = "accelerator int8"
    return {"path": os.path.abspath(path), "kind": kind,
            "runtime": "mxnet" if kind in ("params", "deploy") else runtime}


def provenance(source: Optional[dict], ctx: Sequence) -> dict:
    """`source` (model_source's record, with the model file's sha256 added; None for a model
    given as an object) with the contexts it ran on, this machine's CPU, the package version
    and the time (UTC)."""
    cpu = cpu_info()
    model = None if source is None else {**source, "sha256": fingerprint(source["path"])}
    return {"model": model, "device": ",".join(str(c) for c in ctx) or "cpu",
            "cpu": {**cpu.record(), "vector_width": cpu.vector_width},
            "ssd_nobias": version(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
