"""The export command writes its folder whole or not at all (export/staging.py): a re-export
replaces the whole set, a failure or SIGTERM leaves the previous export byte for byte and no
stage, a folder holding other files is refused, and manifest.json names every file's sha256
and the checkpoint they came from."""
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from ssd_nobias import cli
from ssd_nobias.commands import export as export_command
from ssd_nobias.errors import StorageError, UserError
from ssd_nobias.atomic import remove_dead_stages, sha256
from ssd_nobias.export import deploy, split
from ssd_nobias.export.staging import MANIFEST


def files_of(folder):
    """Every file under folder (relative path -> bytes)."""
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def export(params, out, *formats):
    argv = ["--params", params, "--out", str(out)] + (["--formats", *formats] if formats else [])
    return export_command.main(argv)


@pytest.fixture
def exported(alive_model, tmp_path):
    """A whole export (deploy graph and ONNX) in tmp_path/export."""
    _, params, _, _ = alive_model
    out = tmp_path / "export"
    assert export(params, out, "onnx") == 0
    return params, out


def test_a_re_export_replaces_the_set_and_the_manifest_names_every_file(exported, tmp_path):
    params, out = exported
    assert any(name.endswith(".onnx") for name in os.listdir(out))
    assert export(params, out) == 0  # without --formats onnx: no ONNX file may stay behind
    on_disk = files_of(out)
    assert not [name for name in on_disk if name.endswith(".onnx")]
    with open(out / MANIFEST) as f:
        manifest = json.load(f)
    assert manifest["source"] == {"file": os.path.abspath(params), "sha256": sha256(params)}
    assert set(manifest["files"]) == set(on_disk) - {MANIFEST}
    for name, digest in manifest["files"].items():
        assert digest == sha256(str(out / name))
    with open(out / "export_report.json") as f:
        report = f.read()
    assert ".tmp-" not in report and str(out) in report  # paths name the final folder
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_a_failed_export_leaves_the_previous_one_and_no_stage(exported, tmp_path,
                                                               monkeypatch):
    params, out = exported
    before = files_of(out)

    def disk_full(*args, **kwargs):
        raise StorageError("cannot write accelerator.onnx: No space left on device")

    monkeypatch.setattr(split, "export_accelerator", disk_full)  # what export runs
    with pytest.raises(StorageError):
        export(params, out, "accelerator")
    assert files_of(out) == before and sorted(os.listdir(tmp_path)) == ["export"]
    assert tempfile.tempdir is None or not tempfile.tempdir.startswith(str(out))


def test_sigterm_during_an_export_unwinds_to_the_previous_export(exported, tmp_path,
                                                                 monkeypatch):
    params, out = exported
    before = files_of(out)
    real = deploy.export_deploy

    def terminated_after_the_deploy_graph(*args, **kwargs):
        report = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return report

    monkeypatch.setattr(deploy, "export_deploy", terminated_after_the_deploy_graph)
    code = cli.run(export_command.main, ["--params", params, "--out", str(out)])
    assert code == 128 + signal.SIGTERM
    assert files_of(out) == before and sorted(os.listdir(tmp_path)) == ["export"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_folder_holding_other_files_is_refused_untouched(alive_model, tmp_path):
    _, params, _, _ = alive_model
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files this command did not write \(notes.txt"):
        export(params, out)
    assert os.listdir(out) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["mine"]


def test_what_a_killed_export_left_is_cleaned_up_by_the_next(tmp_path):
    """SIGKILL cannot be caught: a stage stays, or, killed between the swap's two renames, the
    previous export waits under .old-<pid>. The next export removes the one and restores the
    other."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "export"
    stage = tmp_path / f"export.tmp-{dead.pid}"
    stage.mkdir()
    (stage / "half.params").write_bytes(b"x")
    old = tmp_path / f"export.old-{dead.pid}"
    old.mkdir()
    (old / "preprocess.json").write_text("{}")
    live = tmp_path / f"export.tmp-{os.getpid()}"  # a live writer's stage is left alone
    live.mkdir()
    remove_dead_stages(str(out))
    assert sorted(os.listdir(tmp_path)) == ["export", f"export.tmp-{os.getpid()}"]
    assert os.listdir(out) == ["preprocess.json"]
