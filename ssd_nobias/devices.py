"""MXNet contexts from the names a config lists (train.ctx)."""
from __future__ import annotations

import re
import warnings
from typing import List, Optional, Sequence

import mxnet as mx

from ssd_nobias.errors import ConfigError


def contexts(names: Sequence[str], key: str = "train.ctx") -> List[mx.Context]:
    """MXNet contexts for 'cpu', 'cpuN', 'gpuN'; asking for a GPU that is not there is an error
    naming `key` (where the names came from)."""
    gpus = mx.context.num_gpus()
    out = []
    for name in names:
        match = re.fullmatch(r"(cpu|gpu)(\d*)", name)
        if match is None:
            raise ConfigError(f"'{key}': '{name}' is not cpu, cpuN or gpuN")
        kind, index = match.groups()
        index = int(index or 0)
        if kind == "gpu" and index >= gpus:
            hint = ("add train.ctx=[cpu] to the command line (or ctx: [cpu] under train: in "
                    "the YAML)") if key == "train.ctx" else f"use {key} cpu"
            raise ConfigError(f"'{key}' asks for {name}, but this machine has {gpus} GPU(s) "
                              f"visible to MXNet; {hint}")
        out.append(mx.gpu(index) if kind == "gpu" else mx.cpu(index))
    if len(set(out)) != len(out):
        raise ConfigError(f"'{key}' lists a context twice: {list(names)}")
    return out


def inference_contexts(names: Sequence[str]) -> List[mx.Context]:
    """Where to predict: the config's training contexts if this machine has them, else the
    CPU (a model trained on GPUs is evaluated anywhere), saying so."""
    try:
        return contexts(names)
    except ConfigError:
        warnings.warn(f"train.ctx {list(names)} is not on this machine: predicting on the CPU",
                      stacklevel=2)
        return [mx.cpu()]


def inference_device(train_ctx: Sequence[str], device: Optional[str] = None) -> List[mx.Context]:
    """The one context inference runs on: `device` ('cpu', 'gpu0', from --device) if given,
    else the first of the training contexts if this machine has them, else the CPU."""
    if device:
        return contexts([device], key="--device")
    return inference_contexts(train_ctx)[:1]
