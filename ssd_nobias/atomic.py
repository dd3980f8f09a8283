"""Files written whole or not at all: under a temporary name, then renamed into place.

A killed writer leaves at most `<name>.tmp-<pid>[.ext]`, which preemption.remove_stale_temps
deletes once that process is gone.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Iterator, Optional

TEMP_NAME = re.compile(r"\.tmp-(\d+)(\.\w+)?$")  # what temp_path makes: the pid, an extension


def temp_path(path: str, ext: str = "") -> str:
    """This process's temporary name for `path`; `ext` for writers that go by extension."""
    return f"{path}.tmp-{os.getpid()}{ext}"


def writer_pid(path: str) -> Optional[int]:
    """The pid in a temporary name made by temp_path, else None."""
    match = TEMP_NAME.search(path)
    return int(match[1]) if match else None


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


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, obj) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=1))
