"""Building the operator library: clear errors, and the ABI rule install.cc depends on."""
import os
import shutil
import subprocess
import sys
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


def test_a_read_only_package_builds_in_the_user_cache(monkeypatch, tmp_path):
    """Installed where this user cannot write, the library goes to ~/.cache/ssd_nobias."""
    monkeypatch.delenv("SSD_NOBIAS_BUILD_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    package = Path(native.__file__).parent.parent
    monkeypatch.setattr(native.os, "access", lambda path, mode: Path(path) != package)
    assert native.library_path().parent == tmp_path / "ssd_nobias" / "build"


@pytest.mark.subprocess
def test_an_unwritable_build_folder_falls_back_to_the_portable_version(tmp_path):
    """No place to build the operator: impl 'auto' warns, names the folder and runs 'ops';
    impl 'native' refuses with the same reason."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder under a file cannot be made
    code = (
        "import warnings, mxnet as mx\n"
        "from ssd_nobias import NoBiasBatchNorm\n"
        "from ssd_nobias.model.norm import impl_summary\n"
        "layer = NoBiasBatchNorm(in_channels=3)\n"
        "layer.initialize()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    y = layer(mx.nd.ones((2, 3, 4, 4)))\n"
        "print(impl_summary(layer))\n"
        "print(caught[0].message)\n"
        "try:\n"
        "    NoBiasBatchNorm(in_channels=3, impl='native').initialize()\n"
        "    NoBiasBatchNorm(in_channels=3, impl='native')(mx.nd.ones((2, 3, 4, 4)))\n"
        "except Exception as err:\n"
        "    print(type(err).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True,
                          env=dict(os.environ, SSD_NOBIAS_BUILD_DIR=str(blocker / "build")))
    assert done.returncode == 0, done.stderr[-2000:]
    summary, warning, refused = done.stdout.strip().splitlines()[-3:]
    assert summary.startswith("ops (portable")
    assert f"cannot build the NoBiasBatchNorm operator in {blocker / 'build'}" in warning
    assert "set SSD_NOBIAS_BUILD_DIR to a writable folder" in warning
    assert refused == "NativeUnavailable"


def test_a_build_says_what_it_does_before_and_when_done(monkeypatch, tmp_path, capfd):
    """The first command of a new install compiles for a minute: it says so first."""
    compiler = tmp_path / "fake-g++"  # writes whatever -o names: a build that succeeds
    compiler.write_text('#!/bin/sh\nwhile [ $# -gt 1 ]; do [ "$1" = -o ] && : > "$2"; shift; '
                        'done\nexit 0\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("SSD_NOBIAS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("CXX", str(compiler))
    path = native.build()
    lines = capfd.readouterr().err.splitlines()
    assert path.is_file() and path.parent == tmp_path / "build"
    assert lines[0] == (f"ssd_nobias: building the NoBiasBatchNorm operator for this CPU and "
                        f"MXNet, once ({compiler} -march=native, about a minute on 2 cores) ...")
    assert lines[1].startswith(f"ssd_nobias: built {path} in ") and len(lines) == 2
    native.build()  # built: nothing to say
    assert capfd.readouterr().err == ""
