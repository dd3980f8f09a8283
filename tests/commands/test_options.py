"""The model options the commands share (commands/options.py): where a command writes when no
--out is given, from any folder, never over an earlier result."""
import argparse
import os
import subprocess
import sys

import pytest

from ssd_nobias.commands.options import default_out

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model(**given):
    args = dict(params=None, deploy=None, onnx=None, accelerator=None)
    args.update(given)
    return argparse.Namespace(**args)


def test_a_command_writes_beside_the_model_it_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths name the same folders from anywhere
    run = tmp_path / "runs" / "a"
    assert default_out(model(params="runs/a/a-best.params"), "eval") == str(run / "eval")
    assert default_out(model(deploy="runs/a/export"), "eval") == str(run / "eval")
    assert default_out(model(onnx="runs/a/export/m.onnx"), "detect") == str(run / "detect")
    assert default_out(model(accelerator="runs/a/export/accelerator"), "eval") == \
        str(run / "eval")
    assert default_out(model(accelerator="runs/a/export/accelerator/accelerator.int8.onnx"),
                       "eval") == str(run / "eval")
    os.makedirs(run / "eval")
    assert default_out(model(params="runs/a/a-best.params"), "eval") == str(run / "eval2")


@pytest.mark.slow
@pytest.mark.subprocess
def test_detect_twice_without_out_keeps_both_results(alive_model, tmp_path):
    _, params, _, _ = alive_model
    picture = tmp_path / "in.png"
    import cv2
    import numpy as np
    cv2.imwrite(str(picture), np.random.RandomState(0).randint(0, 256, (64, 80, 3), np.uint8))
    home = os.path.dirname(params)
    outs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "detect.py"),
                               "--params", params, str(picture)], capture_output=True,
                              text=True, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(done.stdout.strip().split("under ")[-1])
    first, second = outs
    assert os.path.dirname(first) == home and os.path.basename(second).startswith("detect")
    assert first != second and os.path.isfile(os.path.join(first, "in.json")) and \
        os.path.isfile(os.path.join(second, "in.json"))
