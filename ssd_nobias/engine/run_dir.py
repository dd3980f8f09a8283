"""A run directory's safety: a finished run is never trained over by accident, a start that
fails before its first step leaves the directory as it found it, and a stopped run is continued
only by the very config that started it."""
from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Dict, List, Optional

from ssd_nobias.atomic import make_folder
from ssd_nobias.config import load_config
from ssd_nobias.errors import ConfigError, Stopped, UserError
from ssd_nobias.engine.preemption import LOCK_FILE
from ssd_nobias.model.checkpoint import FILE_KINDS, names_a_file_beside
from ssd_nobias.model.ssd import with_anchor_sizes

# What training, evaluation and the default export write into a run directory.
RUN_FILES = ("metrics.csv", "train.log", "curves.png", "config.yaml", "eval.json",
             "pr_curves.png", "detections.png", LOCK_FILE)
EXPORT_DIRS = ("export",)


class RunDirectoryTaken(UserError):
    """The output directory holds another run's checkpoints or metrics."""


def _sidecars(out_dir: str) -> Dict[str, dict]:
    """The checkpoint sidecars in out_dir (file name -> content), read without checking the
    CRCs: a torn checkpoint is still the previous run's, and every start reads these."""
    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "*.json"))):
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("params"), dict) and \
                "iteration" in meta:  # a malformed one still marks the folder as a run's
            found[os.path.basename(path)] = meta
    return found


def _own_file(out_dir: str, name) -> bool:
    """Whether a file name read from a sidecar names a plain file directly in out_dir: a
    sidecar is data anyone can write, so '../x', absolute paths, folders and links are not
    the run's files, whatever it says."""
    if not names_a_file_beside(name):
        return False
    path = os.path.join(out_dir, name)
    return os.path.isfile(path) and not os.path.islink(path)


def checkpoints(out_dir: str) -> List[str]:
    """Names of the checkpoint files (.params, .states, .training.params and their .json
    sidecars) in out_dir: only plain files in out_dir itself, whatever else a sidecar names."""
    names = []
    for sidecar, meta in _sidecars(out_dir).items():
        names.append(sidecar)
        names += [meta[kind].get("file") for kind in FILE_KINDS
                  if isinstance(meta.get(kind), dict)
                  and _own_file(out_dir, meta[kind].get("file"))]
    return names


def previous_run(out_dir: str) -> List[str]:
    """The files of a run in out_dir that a new run would overwrite or mix with (sorted)."""
    if not os.path.isdir(out_dir):
        return []
    found = set(checkpoints(out_dir))
    found.update(name for name in RUN_FILES if os.path.isfile(os.path.join(out_dir, name)))
    found.update(name for name in EXPORT_DIRS if os.path.isdir(os.path.join(out_dir, name)))
    found.update(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(out_dir),
                                                                      "*.tmp-*")))
    return sorted(found)


def _summary(out_dir: str) -> str:
    sidecars = _sidecars(out_dir)
    parts = []
    if sidecars:
        params = [str(meta["params"].get("file")) for meta in sidecars.values()]
        iterations = [meta["iteration"] for meta in sidecars.values()
                      if isinstance(meta["iteration"], int)]
        newest = f"; newest at iteration {max(iterations)}" if iterations else ""
        parts.append(f"{len(params)} checkpoint(s) ({', '.join(params)}{newest})")
    metrics = os.path.join(out_dir, "metrics.csv")
    if os.path.isfile(metrics):
        with open(metrics) as f:
            rows = max(0, sum(1 for _ in f) - 1)
        parts.append(f"metrics.csv ({rows} rows)")
    return " and ".join(parts)


def claim(out_dir: str, resume: str, overwrite: bool) -> List[str]:
    """Make out_dir ready for a run: refuse one that holds another run's checkpoints or
    metrics unless resuming ('auto') or `overwrite`, which removes that run's files (returned)
    so that nothing of it stays mixed with the new one."""
    if resume == "auto":
        return []
    held = _summary(out_dir)
    if not held:
        return []
    if not overwrite:
        raise RunDirectoryTaken(
            f"output_dir '{out_dir}' already holds a run: {held}. Continue it with "
            f"train.resume=auto, start over with --overwrite (removes that run's files), or "
            f"give this run another output_dir")
    removed = [name for name in previous_run(out_dir) if name != LOCK_FILE]
    for name in removed:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return removed


def _first_missing(path: str) -> Optional[str]:
    """The outermost folder of `path` that does not exist yet (None if it all exists)."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


class StartGuard:
    """While a run has not taken its first step, remember what out_dir held; if the start
    fails, remove what it created (the directory itself too) and cut files it appended to
    back to their size. Call `started()` after the first step."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.created = _first_missing(out_dir)  # the top folder this guard creates, if any
        make_folder(out_dir)
        self.sizes: Dict[str, int] = {e.name: e.stat().st_size for e in os.scandir(out_dir)
                                      if e.is_file()}
        self.before = set(os.listdir(out_dir))
        self.done = False

    def started(self) -> None:
        self.done = True

    def restore(self) -> None:
        """Put out_dir back as it was when the guard was made."""
        for name in set(os.listdir(self.out_dir)) - self.before:
            path = os.path.join(self.out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        for name, size in self.sizes.items():
            path = os.path.join(self.out_dir, name)
            if os.path.isfile(path) and os.path.getsize(path) > size:
                os.truncate(path, size)
        if self.created:
            shutil.rmtree(self.created)

    def __enter__(self) -> "StartGuard":
        return self

    def __exit__(self, exc_type, exc, tb) -> Optional[bool]:
        # a stop on a signal saves on purpose: what it wrote stays
        failed = exc_type is not None and not issubclass(exc_type, (Stopped, KeyboardInterrupt))
        if failed and not self.done:
            self.restore()
        return None


def continues(out_dir: str, config: str, overrides: List[str]) -> bool:
    """Whether out_dir holds a run of exactly `config` with `overrides` (its config.yaml, as
    training records it), which train.resume=auto may continue: what a stopped study asks
    before it resumes a part-trained run rather than starting it over."""
    saved = os.path.join(out_dir, "config.yaml")
    if not os.path.isfile(saved):
        return False
    try:
        held = load_config(saved)
    except ConfigError:  # another version's keys: not this config
        return False
    return _resumed(held) == _resumed(with_anchor_sizes(load_config(config, overrides)))


def _resumed(cfg) -> dict:
    """`cfg` as a plain dict, with train.resume set as a continued run sets it."""
    plain = json.loads(json.dumps(cfg))
    plain["train"]["resume"] = "auto"
    return plain
