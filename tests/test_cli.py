"""What every script shares: --config, key=value overrides in any place, errors printed plainly."""
import pytest

from ssd_nobias import cli
from ssd_nobias.commands import options
from ssd_nobias.errors import ConfigError


def test_overrides_and_options_in_any_order():
    p = cli.parser("test")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(["--config", "a.yaml", "train.lr=0.1", "--overwrite", "seed=3",
                         "--out", "o", "name=x"])
    assert args.config == "a.yaml" and args.overwrite and args.out == "o"
    assert args.overrides == ["train.lr=0.1", "seed=3", "name=x"]


def test_the_model_options_take_exactly_one_file(capsys):
    p = cli.parser("test", config_required=False)
    options.add_model(p)
    args = p.parse_args(["k=v", "--accelerator", "acc", "j=w", "--int8"])
    assert (args.accelerator, args.int8, args.overrides) == ("acc", True, ["k=v", "j=w"])
    for two in (["--params", "x", "--onnx", "y"], ["--deploy", "d", "--accelerator", "a"], []):
        with pytest.raises(SystemExit):
            p.parse_args(two)
    with pytest.raises(SystemExit):
        options.check_model(p, p.parse_args(["--onnx", "m.onnx", "--int8"]))
    assert "--int8 goes with --accelerator DIR" in capsys.readouterr().err


@pytest.mark.parametrize("module, argv, said", [
    ("export", ["--params", "x.params", "--accelerator", "dir"], "--formats accelerator"),
    ("audit", ["x.params"], "--params FILE"),
    ("anchors", ["--config", "c.yaml", "--json", "a.json"], "unrecognized arguments: --json"),
    ("check_dataset", ["--config", "c.yaml", "--workers", "2"], "unrecognized arguments")])
def test_flags_are_named_one_way_across_commands(capsys, module, argv, said):
    """A model file is --params/--deploy/--onnx/--accelerator everywhere, output --out, threads
    --threads; an old spelling is refused before any work, export's with what to write."""
    import importlib
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(f"ssd_nobias.commands.{module}").main(argv)
    assert stop.value.code == 2 and said in capsys.readouterr().err


def test_eval_without_config_names_what_it_is_for():
    p = cli.parser("test", config_required=False)
    options.add_model(p)
    with pytest.raises(ConfigError, match="--config is needed for the dataset"):
        options.config_or_sidecar(p.parse_args(["--onnx", "m.onnx"]), "the dataset")


@pytest.mark.subprocess
@pytest.mark.parametrize("blocked, job, extra", [
    ("pycocotools", "from ssd_nobias.data.coco import COCOFormatDetection as C; "
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


def test_inference_commands_take_a_device(capsys):
    from ssd_nobias.commands import detect, evaluate, export
    for module in (evaluate, detect, export):
        with pytest.raises(SystemExit):  # --help lists it and exits
            module.main(["--help"])
        assert "--device cpu|gpuN" in capsys.readouterr().out
    p = cli.parser("test")
    cli.add_device(p)
    assert p.parse_args(["--config", "c.yaml", "--device", "gpu1"]).device == "gpu1"
