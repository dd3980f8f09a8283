"""Checkpoints that are whole or absent: `<prefix>.params`, `.states` (optimizer), with a
weight average `.training.params` (the weights training goes on from, .params holding the
averaged ones), and a `.json` sidecar (epoch, iteration, classes, resolved config, CRC32 of the
other files).

Each file is written under a temporary name and renamed; the sidecar goes last and vouches for
the others by CRC. A kill at any moment never leaves a checkpoint that looks whole and is not:
one torn between its renames fails the CRC check, and resume takes the newest whole one.
"""
from __future__ import annotations

import glob
import io
import json
import os
import pickle
import shutil
import tempfile
import zlib
from contextlib import nullcontext
from typing import Optional, Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon

from ssd_nobias.atomic import temp_path, write_failure, write_json
from ssd_nobias.errors import DataError


# What MXNet's Trainer.save_states pickles for SGD (the optimizer this project trains with):
# the only globals a .states file may name. A CRC sidecar does not protect against a hostile
# file (whoever writes one writes the other), so nothing else is ever unpickled.
STATES_GLOBALS = {("mxnet.ndarray.ndarray", "NDArray"), ("builtins", "bytearray"),
                  ("mxnet.optimizer.optimizer", "SGD"),
                  ("numpy.core.multiarray", "scalar"), ("numpy", "dtype")}


class _StatesUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but STATES_GLOBALS: no code runs."""

    def find_class(self, module: str, name: str):
        if (module, name) not in STATES_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which optimizer state "
                                         f"never holds")
        return super().find_class(module, name)


def load_states(trainer: gluon.Trainer, path: str) -> None:
    """trainer.load_states, but only for a file that unpickles to optimizer state alone.

    MXNet unpickles .states files; a hostile one would run code. Its bytes are first read by
    a restricted unpickler, and those same checked bytes are what MXNet then loads."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        state = _StatesUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # pickle raises many types for a corrupt or hostile file
        raise DataError(f"optimizer state '{path}' is refused: {err}; resume from a "
                        f"checkpoint this project wrote, or start over") from None
    if not (isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict)):
        raise DataError(f"optimizer state '{path}' is refused: not MXNet's (states, "
                        f"optimizer) pair")
    with tempfile.TemporaryDirectory() as tmp:
        checked = os.path.join(tmp, "checked.states")
        with open(checked, "wb") as f:
            f.write(data)
        trainer.load_states(checked)


def first_non_finite(net: gluon.Block) -> Optional[str]:
    """The name of the first parameter (weights and norm statistics alike) holding a NaN or an
    infinity, else None: a model that diverged, which no checkpoint or export may carry."""
    for name, param in net.collect_params().items():
        try:
            arrays = param.list_data()
        except gluon.parameter.DeferredInitializationError:
            continue  # not initialized yet: nothing to check
        if any(not np.isfinite(array.asnumpy()).all() for array in arrays):
            return name
    return None


def sidecar_path(params_path: str) -> str:
    """The .json sidecar of a .params checkpoint."""
    return params_path[: -len(".params")] + ".json"


def names_a_file_beside(name) -> bool:
    """Whether `name`, read from a sidecar (data anyone can write), is a bare file name: a
    sidecar names files beside it, never '../x', an absolute path or a subfolder's file."""
    return isinstance(name, str) and name not in ("", ".", "..") and \
        os.path.basename(name) == name and (os.altsep or os.sep) not in name


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


FILE_KINDS = ("params", "states", "training")  # the files a sidecar may vouch for


def save_checkpoint(prefix: str, net: gluon.Block, trainer: Optional[gluon.Trainer],
                    meta: dict, average=None) -> str:
    """Write prefix.params (+ .states when a trainer is given) and prefix.json; return .params.

    With `average` (engine/ema.py's WeightAverage), prefix.params holds the averaged weights,
    what evaluation and export read, and prefix.training.params the net's own, which resume
    continues from."""
    files = {"params": prefix + ".params"}
    if average is not None:
        files["training"] = prefix + ".training.params"
    if trainer is not None:
        files["states"] = prefix + ".states"
    # each file is about the parameters' size (SGD's states: one momentum per parameter)
    size = sum(int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
               for p in net.collect_params().values() if p.shape)
    for kind, path in files.items():
        try:
            if kind == "params":
                with average.swapped() if average is not None else nullcontext():
                    net.save_parameters(temp_path(path))
            elif kind == "training":
                net.save_parameters(temp_path(path))
            else:
                trainer.save_states(temp_path(path))
        except (OSError, mx.base.MXNetError) as err:
            for done in files.values():  # the previous checkpoint stays as it was
                if os.path.exists(temp_path(done)):
                    os.remove(temp_path(done))
            raise write_failure(path, err, size) from None
    record = dict(meta)
    for kind, path in files.items():
        record[kind] = {"file": os.path.basename(path), "crc32": _crc32(temp_path(path))}
    for path in files.values():
        os.replace(temp_path(path), path)
    write_json(prefix + ".json", record)  # last: it vouches for the files above
    return files["params"]


def link_checkpoint(source: str, prefix: str, with_states: bool) -> str:
    """prefix.params (+ .training.params, + .states with `with_states`) as hard links to the
    files of the checkpoint saved as `source` (a prefix), and prefix.json naming them: a
    second name for the same weights costs no disk (files are replaced, never rewritten in
    place, so the links never change). Copies where the file system has no hard links."""
    with open(source + ".json") as f:
        record = json.load(f)
    files = {}
    for kind in ("params", "training", "states"):
        if kind not in record or (kind == "states" and not with_states):
            record.pop(kind, None)
            continue
        suffix = record[kind]["file"][len(os.path.basename(source)):]
        files[kind] = (os.path.join(os.path.dirname(source), record[kind]["file"]),
                       prefix + suffix)
        record[kind] = {**record[kind], "file": os.path.basename(prefix + suffix)}
    for src, dst in files.values():
        try:
            os.link(src, temp_path(dst))
        except OSError:
            shutil.copyfile(src, temp_path(dst))
    for _, dst in files.values():
        os.replace(temp_path(dst), dst)
    write_json(prefix + ".json", record)
    return files["params"][1]


def read_meta(params_path: str) -> Optional[dict]:
    """The sidecar of a .params file if it exists and its files match their CRCs, else None."""
    sidecar = sidecar_path(params_path)
    try:
        with open(sidecar) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or \
            any(not isinstance(meta.get(key, 0), int) for key in ("iteration", "epoch")):
        return None
    folder = os.path.dirname(params_path)
    for kind in FILE_KINDS:
        if kind not in meta:
            continue
        name = meta[kind].get("file") if isinstance(meta[kind], dict) else None
        if not names_a_file_beside(name):
            return None
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or _crc32(path) != meta[kind]["crc32"]:
            return None
    return meta


def find_resume(out_dir: str, name: str) -> Optional[str]:
    """The .params of the newest whole checkpoint with optimizer state in out_dir, or None."""
    best, best_iteration = None, -1
    for sidecar in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(name)}-*.json")):
        params = sidecar[: -len(".json")] + ".params"
        meta = read_meta(params)
        if meta and "states" in meta and meta["iteration"] > best_iteration:
            best, best_iteration = params, meta["iteration"]
    return best


def load_checkpoint(params_path: str, net: gluon.Block, trainer: Optional[gluon.Trainer],
                    ctx: Sequence[mx.Context], average=None) -> dict:
    """Load the weights training goes on from (and optimizer state when a trainer is given);
    with `average`, the averaged weights into it (a checkpoint without them starts the
    average from its weights). Returns the sidecar."""
    if not os.path.isfile(params_path):
        raise DataError(f"checkpoint '{params_path}' does not exist")
    meta = read_meta(params_path)
    if meta is None:
        raise DataError(f"checkpoint '{params_path}' has no matching .json sidecar, or its files "
                        f"do not match the CRCs the sidecar records (an interrupted write?)")
    net.load_parameters(params_path, ctx=list(ctx))
    if average is not None:
        average.take(net)
    if "training" in meta:
        net.load_parameters(os.path.join(os.path.dirname(params_path),
                                         meta["training"]["file"]), ctx=list(ctx))
    if trainer is not None:
        if "states" not in meta:
            raise DataError(f"checkpoint '{params_path}' has no optimizer state to resume from")
        load_states(trainer, os.path.join(os.path.dirname(params_path), meta["states"]["file"]))
    return meta
