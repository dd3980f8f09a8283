"""Building the operator library: clear errors, and the ABI rule install.cc depends on."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ssd_nobias.model import native


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_NOBIAS_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(RuntimeError, match="'no-such-compiler' was not found"):
        native.build()


def test_failed_compile_names_the_command_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_NOBIAS_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(RuntimeError, match="compiling the NoBiasBatchNorm operator failed"):
        native.build()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_set_attr_calls_reach_libmxnet_own_instantiations():
    """install.cc must not carry its own nnvm::Op::set_attr (see the note there): undefined here."""
    symbols = subprocess.run(["nm", "-D", "-C", str(native.load())], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    set_attr = [line.split()[0] for line in symbols if "nnvm::Op::set_attr<" in line]
    assert set_attr and set_attr == ["U"] * len(set_attr)


@pytest.mark.subprocess
def test_blocked_kernels_match_plain_ones(tmp_path):
    """kernels.h with 8 and 16 lanes (nChw8c / nChw16c; AVX-512 machines give the latter) vs NCHW."""
    source = Path(__file__).parent / "csrc" / "kernel_layouts.cc"
    binary = tmp_path / "kernel_layouts"
    subprocess.run([os.environ.get("CXX", "g++"), *native.COMMON, "-O3", f"-I{native.CSRC}",
                    str(source), "-o", str(binary)], check=True)
    worst = float(subprocess.run([str(binary)], capture_output=True, text=True,
                                 check=True).stdout)
    assert worst < 1e-5


def test_a_relative_build_directory_is_made_absolute(monkeypatch, tmp_path):
    """mx.library.load refuses relative paths; SSD_NOBIAS_BUILD_DIR may be one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSD_NOBIAS_BUILD_DIR", "build")
    assert native.library_path().parent == tmp_path / "build"
