"""An export folder written whole or not at all, and saying what model its files came from.

Export builds everything in a sibling folder `<out>.tmp-<pid>` (ONNX Runtime's quantization
temporaries included: the process's temporary folder points inside it meanwhile) and swaps it
for `out` only when every file is written and checked: a failure, a full disk or SIGTERM
leaves the previous export as it was and removes the stage; after SIGKILL the previous export
still loads, and the next export removes the dead stage (atomic.replacing_folder).
`manifest.json` lists every file with its sha256 and the checkpoint it was made from, so a
folder never mixes two models.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from typing import Dict, Iterator, Set

from ssd_nobias.atomic import replacing_folder, sha256, stopping_on_signals, write_json

MANIFEST = "manifest.json"
CONFIG = "config.yaml"  # the config the model was exported with
REPORT = "export_report.json"
# What an export writes at the top of its folder, besides what a manifest lists: the names a
# re-export may replace in a folder written before manifests existed.
FIXED_NAMES = {"accelerator", "preprocess.json", REPORT, MANIFEST, CONFIG,
               "recalibrated.params", "recalibrated.json"}
MODEL_FILES = re.compile(r".+(-symbol\.json|-0000\.params|\.onnx)$")


def owned_names(out: str) -> Set[str]:
    """The top-level names in `out` a re-export may replace: those its manifest lists, and
    those an export writes."""
    names = {n for n in os.listdir(out) if n in FIXED_NAMES or MODEL_FILES.match(n)} \
        if os.path.isdir(out) else set()
    try:
        with open(os.path.join(out, MANIFEST)) as f:
            listed = json.load(f).get("files", {})
        names |= {str(p).split("/")[0] for p in listed}
    except (OSError, ValueError, AttributeError):
        pass
    return names


@contextlib.contextmanager
def _temporaries_in(folder: str) -> Iterator[None]:
    """tempfile's folder (ONNX Runtime's quantizer writes there) inside `folder` meanwhile."""
    inside = os.path.join(folder, ".tmp")
    os.makedirs(inside)
    before, tempfile.tempdir = tempfile.tempdir, inside
    try:
        yield
    finally:
        tempfile.tempdir = before
        shutil.rmtree(inside, ignore_errors=True)


@contextlib.contextmanager
def staged(out: str, source: str) -> Iterator[str]:
    """Yield the stage to export into; when the block succeeds, the stage's paths in the
    report are rewritten to `out`, manifest.json is written and the stage replaces `out`.
    `source`: the checkpoint the export is made from."""
    out = os.path.normpath(out)
    with stopping_on_signals(), replacing_folder(out, owned_names(out), "export") as stage:
        with _temporaries_in(stage):
            yield stage
        _relocate(os.path.join(stage, REPORT), stage, out)
        write_manifest(stage, source)


def _relocate(report: str, stage: str, out: str) -> None:
    """The report records file paths: the stage's become the final folder's."""
    if os.path.isfile(report):
        with open(report) as f:
            text = f.read()
        with open(report, "w") as f:
            f.write(text.replace(json.dumps(stage)[1:-1], json.dumps(out)[1:-1]))


def manifest(folder: str, source: str) -> Dict:
    """Every file under `folder` (but the manifest) with its sha256, and the checkpoint's."""
    files = {}
    for base, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if rel != MANIFEST:
                files[rel] = sha256(path)
    return {"source": {"file": os.path.abspath(source), "sha256": sha256(source)},
            "files": dict(sorted(files.items()))}


def write_manifest(folder: str, source: str) -> None:
    write_json(os.path.join(folder, MANIFEST), manifest(folder, source))
