"""`ssd-nobias` itself (ssd_nobias/commands/__init__.py): the job list prints without importing
MXNet, each job's line is its module's full first docstring line, --version, and a mistyped job
gets a suggestion."""
import importlib
import subprocess
import sys

from ssd_nobias.commands import JOBS, main


def test_the_job_list_imports_no_job_and_no_mxnet():
    code = ("import sys; from ssd_nobias.commands import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m == 'mxnet' or "
            "m.startswith('ssd_nobias.commands.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "[]"
    for job, (_, _, about) in JOBS.items():
        assert f"  {job:16s}{about}" in lines


def test_each_jobs_help_prints_without_importing_mxnet():
    """A job's --help answers at once: its module imports MXNet (seconds) only after its
    arguments are parsed."""
    code = ("import contextlib, io, sys\n"
            "from ssd_nobias.commands import JOBS, main\n"
            "for job in JOBS:\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            main([job, '--help'])\n"
            "        except SystemExit as stop:\n"
            "            assert stop.code == 0, job\n"
            "    assert out.getvalue().startswith('usage: '), job\n"
            "    print(job, 'mxnet' in sys.modules, 'onnxruntime' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{job} False False" for job in JOBS]


def test_each_jobs_line_is_its_modules_first_docstring_line_and_a_whole_sentence():
    for job, (module, _, about) in JOBS.items():
        doc = importlib.import_module(f"ssd_nobias.commands.{module}").__doc__
        assert doc.splitlines()[0] == about, job
        assert about.endswith("."), job


def test_version_and_a_mistyped_job(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ssd-nobias ") and len(out.split()) == 2
    assert main(["trian"]) == 2
    assert "unknown job 'trian' (did you mean 'train'?); jobs: train, eval" in \
        capsys.readouterr().err
    assert main(["nothing-like-it"]) == 2
    assert "did you mean" not in capsys.readouterr().err
