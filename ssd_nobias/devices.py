"""MXNet contexts from the names a config lists (train.ctx)."""
from __future__ import annotations

import re
import warnings
from typing import List, Sequence

import mxnet as mx

from ssd_nobias.errors import ConfigError


def contexts(names: Sequence[str]) -> List[mx.Context]:
    """MXNet contexts for 'cpu', 'cpuN', 'gpuN'; asking for a GPU that is not there is an error."""
    gpus = mx.context.num_gpus()
    out = []
    for name in names:
        kind, index = re.fullmatch(r"(cpu|gpu)(\d*)", name).groups()
        index = int(index or 0)
        if kind == "gpu" and index >= gpus:
            raise ConfigError(f"'train.ctx' asks for {name}, but this machine has {gpus} GPU(s) "
                              f"visible to MXNet; add train.ctx=[cpu] to the command line (or "
                              f"ctx: [cpu] under train: in the YAML)")
        out.append(mx.gpu(index) if kind == "gpu" else mx.cpu(index))
    if len(set(out)) != len(out):
        raise ConfigError(f"'train.ctx' lists a context twice: {list(names)}")
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
