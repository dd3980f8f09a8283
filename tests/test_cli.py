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
