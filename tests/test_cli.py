"""What every script shares: --config, key=value overrides in any place, errors printed plainly."""
import pytest

from ssd_nobias import cli


def test_overrides_and_options_in_any_order():
    p = cli.parser("test")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(["--config", "a.yaml", "train.lr=0.1", "--overwrite", "seed=3",
                         "--out", "o", "name=x"])
    assert args.config == "a.yaml" and args.overwrite and args.out == "o"
    assert args.overrides == ["train.lr=0.1", "seed=3", "name=x"]


def test_exclusive_model_files_still_refuse_two():
    p = cli.parser("test", config_required=False)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--params")
    which.add_argument("--onnx")
    assert p.parse_args(["k=v", "--params", "x.params"]).params == "x.params"
    with pytest.raises(SystemExit):
        p.parse_args(["--params", "x", "--onnx", "y"])


@pytest.mark.subprocess
@pytest.mark.parametrize("blocked, job, extra", [
    ("pycocotools", "from ssd_nobias.data.datasets import COCOFormatDetection as C; "
                    "C('{root}', ['instances_train'])", "coco"),
    ("onnxruntime", "from ssd_nobias.runtime.onnxrt import session; session('x.onnx')", "onnx")])
def test_a_missing_extra_is_named_with_its_install_command(tmp_path, blocked, job, extra):
    import subprocess
    import sys
    from ssd_nobias.data.synthetic import make_synthetic
    root = make_synthetic(str(tmp_path / "coco"), train=2, val=1, size=64, fmt="coco")["root"]
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from ssd_nobias.errors import MissingExtra\n"
            f"try:\n    {job.format(root=root)}\nexcept MissingExtra as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"needs {blocked}, which is not installed: pip install 'ssd_nobias[{extra}]'" in \
        done.stdout


def test_inference_commands_take_a_device():
    from ssd_nobias.commands import detect, evaluate
    for module in (evaluate, detect):
        with pytest.raises(SystemExit):  # --help lists it and exits
            module.main(["--help"])
    p = cli.parser("test")
    cli.add_device(p)
    assert p.parse_args(["--config", "c.yaml", "--device", "gpu1"]).device == "gpu1"
