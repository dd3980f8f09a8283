"""Files written whole or not at all: under a temporary name, then renamed into place.

A killed writer leaves at most `<name>.tmp-<pid>[.ext]`, which remove_stale_temps
deletes once that process is gone.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
from typing import Iterable, Iterator, List, Optional

from ssd_nobias.errors import Stopped, StorageError, UserError

TEMP_NAME = re.compile(r"\.tmp-(\d+)(\.\w+)?$")  # what temp_path makes: the pid, an extension


def temp_path(path: str, ext: str = "") -> str:
    """This process's temporary name for `path`; `ext` for writers that go by extension."""
    return f"{path}.tmp-{os.getpid()}{ext}"


def writer_pid(path: str) -> Optional[int]:
    """The pid in a temporary name made by temp_path, else None."""
    match = TEMP_NAME.search(path)
    return int(match[1]) if match else None


def sha256(path: str) -> str:
    """The file's sha256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def numbered_folder(base: str) -> str:
    """`base` if nothing is there yet, else the first of base2, base3, ... that is free: a
    default output folder that never takes an earlier result's place."""
    if not os.path.lexists(base):
        return base
    k = 2
    while os.path.lexists(f"{base}{k}"):
        k += 1
    return f"{base}{k}"


def make_folder(path: str) -> None:
    """os.makedirs(path, exist_ok=True), a failure (a read-only place, a file in the way) a
    StorageError naming the folder."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create the folder {path}: "
                           f"{os.strerror(err.errno) if err.errno else err}; choose one you "
                           f"can write (output_dir=..., --out)") from None


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a temporary's writer, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(out_dir: str) -> List[str]:
    """Delete `*.tmp-<pid>` files in out_dir whose writer is not alive on this machine; return
    their names. A live writer's files are left alone."""
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "*.tmp-*"))):
        pid = writer_pid(path)
        if pid is None or process_alive(pid):
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(os.path.basename(path))
    if removed:
        logging.getLogger(__name__).info(
            "removed %d temporary file(s) left by writers that are no longer running: %s",
            len(removed), ", ".join(removed))
    return removed


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped while the block runs, so that it unwinds, removing its
    temporaries (their default action kills the process where it stands). Processes forked
    meanwhile (data loader workers, which their pool ends with SIGTERM) keep the default."""
    owner = os.getpid()

    def stop(signum, frame):
        if os.getpid() != owner:  # a forked worker (a data loader's): die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        error = Stopped(f"stopped by {signal.Signals(signum).name}; files being written were "
                        f"removed, those already whole kept")
        error.code = 128 + signum
        raise error

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def replacing(path: str, ext: str = "") -> Iterator[str]:
    """Yield a temporary path to write; it replaces `path` if the block succeeds and is
    deleted if it raises."""
    tmp = temp_path(path, ext)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _size(n: int) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def write_failure(path: str, err: Exception, needed: Optional[int] = None) -> StorageError:
    """The error to raise when writing `path` failed with `err` (an OSError, or MXNet's short
    write): what happened, the file, the space left on its file system and, when the caller
    knows it, about how many bytes the file `needed`."""
    if isinstance(err, OSError) and err.errno:
        reason = os.strerror(err.errno)
    else:  # MXNet reports a short write as "FileStream.Write incomplete"
        reason = "the write was cut short"
    if getattr(err, "errno", None) != errno.ENOSPC and "incomplete" not in str(err):
        return StorageError(f"cannot write {path}: {reason}")
    try:
        free = f"{shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free / 2**20:.1f} MB"
    except OSError:
        free = "too little space"
    needs = f"the file needs about {_size(needed)}" if needed else "less than the file needs"
    return StorageError(f"cannot write {path}: {reason}: its file system has {free} free, "
                        f"{needs}; free some space or write elsewhere (output_dir=...)")


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically; a failed write raises StorageError naming it."""
    try:
        with replacing(path) as tmp, open(tmp, "w") as f:
            f.write(text)
    except OSError as err:
        if isinstance(err, StorageError):
            raise
        raise write_failure(path, err) from None


def write_json(path: str, obj) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=1))


def write_json_gz(path: str, obj) -> None:
    """Write `obj` as compact gzipped JSON to `path` atomically (bulky per-image records); the
    same `obj` gives the same bytes (no time or name in the gzip header), so a rewrite of a
    committed file changes nothing."""
    try:
        with replacing(path) as tmp, open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
            f.write(json.dumps(obj, separators=(",", ":")).encode())
    except OSError as err:
        if isinstance(err, StorageError):
            raise
        raise write_failure(path, err) from None


def remove_dead_stages(out: str) -> None:
    """What replacing_folder left of `out` in processes now gone: their stages removed, and a
    previous `out` put back where one was killed between its two renames."""
    for path in glob.glob(glob.escape(out) + ".old-*"):
        pid = re.search(r"\.old-(\d+)$", path)
        if pid and not process_alive(int(pid[1])):
            if os.path.exists(out):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.rename(path, out)
    for path in glob.glob(glob.escape(out) + ".tmp-*"):
        pid = writer_pid(path)
        if pid is not None and not process_alive(pid):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def replacing_folder(out: str, owned: Iterable[str], what: str) -> Iterator[str]:
    """Yield a temporary sibling folder to fill; it replaces `out` whole if the block succeeds
    and is removed if it raises. `out` may be absent, empty, or a folder holding nothing but
    the top-level names in `owned` (what this `what` writes there); any other folder is
    refused untouched, so a user's files are never removed. What a killed one left beside
    `out` is cleaned up first (remove_dead_stages)."""
    out = os.path.normpath(out)
    remove_dead_stages(out)
    if os.path.isdir(out) and not os.path.islink(out):
        foreign = sorted(set(os.listdir(out)) - set(owned))
        if foreign:
            raise UserError(
                f"--out {out} is not empty and holds files this command did not write "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); give "
                f"{what} a new or empty folder")
    elif os.path.lexists(out):
        raise UserError(f"--out {out} exists and is not a folder; give {what} a new folder")
    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    make_folder(tmp)
    try:
        yield tmp
        if os.path.isdir(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
