"""Config loading: YAML + overrides -> one validated, frozen config; bad values stop early."""
import glob
import os
import re

import mxnet as mx
import pytest

from ssd_nobias.config import defaults, eval_metric, load_config, save_config, with_absolute_paths
from ssd_nobias.devices import contexts
from ssd_nobias.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))))
def test_shipped_configs_load(path):
    cfg = load_config(path, ["train.ctx=[cpu]", "train.batch_size=192"])
    assert cfg.model.name.startswith("ssd_300_mobilenet")
    assert cfg.is_frozen()


def test_shipped_configs_cover_the_recipes():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.yaml"))}
    assert {"ssd300_mobilenet1.0_voc_nobias.yaml", "ssd300_mobilenet1.0_voc_batchnorm.yaml",
            "ssd300_mobilenet1.0_coco_nobias.yaml", "ssd300_mobilenet1.0_coco_batchnorm.yaml",
            "ssd300_mobilenet1.0_custom_nobias.yaml", "demo_synthetic.yaml"} <= names


def test_file_then_overrides(tmp_path):
    path = write(tmp_path, "name: run1\ntrain:\n  lr: 0.1\n  wd: 5e-4\n  ctx: [cpu0, cpu1]\n")
    cfg = load_config(path, ["train.lr=0.02", "train.batch_size=8", "model.norm=batchnorm"])
    assert cfg.train.lr == 0.02 and cfg.train.wd == 0.0005  # 5e-4: a string in YAML 1.1
    assert cfg.train.batch_size == 8 and cfg.model.norm == "batchnorm"
    assert cfg.output_dir == os.path.join("runs", "run1")
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # frozen


@pytest.mark.parametrize("overrides, key", [
    (["train.lrr=0.1"], "train.lrr"),
    (["foo.bar=1"], "foo"),
    (["train.lr=-0.1"], "train.lr"),
    (["train.lr=fast"], "train.lr"),
    (["train.batch_size=7", "train.ctx=[cpu0,cpu1]"], "train.batch_size"),
    (["train.batch_size=8.5"], "train.batch_size"),
    (["model.name=ssd_300_resnet50_voc"], "model.name"),
    (["model.norm=groupnorm"], "model.norm"),
    (["data.dataset=voc_custom", "model.name=ssd_300_mobilenet1.0_voc",
      "data.classes=[a]"], "model.name"),
    (["data.dataset=voc_custom", "model.name=ssd_300_mobilenet1.0_custom"], "data.classes"),
    (["train.ctx=[tpu0]"], "train.ctx"),
    (["train.lr_mode=linear"], "train.lr_mode"),
    (["train.lr_steps=[200,160]"], "train.lr_steps"),
    (["train.resume=somewhere"], "train.resume"),
    (["train.kvstore=dist_async"], "train.kvstore"),
    (["train.amp=yes please"], "train.amp"),
    (["name=my run"], "name"),
    (["train.lr"], "train.lr"),
    (["model.conv_weights=zero_mean"], "model.conv_weights"),
    (["model.depthwise_weights=flipped"], "model.depthwise_weights"),
    (["model.activation=tlu"], "model.activation"),
    (["model.leaky_slope=0"], "model.leaky_slope"),
    (["model.norm_impl=cuda"], "model.norm_impl"),
    (["data.bad_images=ignore"], "data.bad_images"),
])
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        load_config(write(tmp_path, "train:\n  epoch: 3\n"))
    with pytest.raises(ConfigError, match="'train' .* must be a mapping"):
        load_config(write(tmp_path, "train: 3\n"))


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["train.lr=0.05", "data.train_splits=[[2007,trainval]]"])
    save_config(cfg, str(tmp_path / "config.yaml"))
    again = load_config(str(tmp_path / "config.yaml"))
    assert again == cfg
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_contexts():
    assert contexts(["cpu0", "cpu1"]) == [mx.cpu(0), mx.cpu(1)]
    assert contexts(["cpu"]) == [mx.cpu(0)]
    if mx.context.num_gpus() == 0:
        with pytest.raises(ConfigError, match="gpu0.*0 GPU"):
            contexts(["gpu0"])
    with pytest.raises(ConfigError, match="twice"):
        contexts(["cpu", "cpu0"])


def test_eval_metric_follows_the_dataset():
    assert eval_metric(defaults()) == "voc07"
    assert eval_metric(load_config(None, ["data.dataset=coco",
                                          "model.name=ssd_300_mobilenet1.0_coco"])) == "coco"
    assert eval_metric(load_config(None, ["eval.metric=voc"])) == "voc"


def test_every_key_says_what_it_does_and_print_config_shows_changes():
    from ssd_nobias.config import SCHEMA, describe, keys
    assert keys() == list(SCHEMA) and all(entry.doc for entry in SCHEMA.values())
    text = describe(load_config(None, ["train.lr=0.1"]))
    assert "train.lr = 0.1  (default 0.001)\n    peak learning rate" in text
    assert "train.epochs = 240\n" in text  # unchanged keys show no default
    assert len(re.findall(r"^\S+ = ", text, re.M)) == len(keys())


@pytest.mark.parametrize("override, suggestion", [
    ("train.batchsize=32", "did you mean train.batch_size or train.base_batch_size?"),
    ("model.nmsthresh=0.5", "did you mean model.nms_thresh"),
    ("trian.lr=1", "did you mean train.lr"),
])
def test_an_unknown_key_suggests_the_nearest_known_ones(override, suggestion):
    with pytest.raises(ConfigError, match=re.escape(suggestion)):
        load_config(None, [override])


def test_a_missing_dataset_names_the_config_key(tmp_path):
    from ssd_nobias.data.datasets import build_dataset
    cfg = load_config(None, [f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(DataError, match=r"\(data\.root\) does not exist"):
        build_dataset(cfg, "train")
    cfg = load_config(None, [f"data.root={tmp_path}", "data.dataset=voc_custom",
                             "data.classes=[a]", "model.name=ssd_300_mobilenet1.0_custom",
                             "data.train_splits=[mine]"])
    with pytest.raises(DataError, match=r"mine\.txt' does not exist \[.*data\.train_splits="
                                        r"\['mine'\]\]"):
        build_dataset(cfg, "train")


def test_a_config_starts_from_its_base_and_states_only_what_differs(tmp_path):
    (tmp_path / "base.yaml").write_text("name: b\ntrain:\n  lr: 0.1\n  epochs: 7\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mid.yaml").write_text("_base_: ../base.yaml\ntrain:\n  lr: 0.2\n")
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("_base_: mid.yaml\nname: c\n")
    cfg = load_config(str(child), ["train.epochs=9"])
    assert (cfg.name, cfg.train.lr, cfg.train.epochs) == ("c", 0.2, 9)
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(str(tmp_path / "loop.yaml"))
    (tmp_path / "orphan.yaml").write_text("_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml' does not exist \(the _base_ of"):
        load_config(str(tmp_path / "orphan.yaml"))


@pytest.mark.parametrize("data", ["voc", "coco"])
def test_batchnorm_configs_differ_from_their_bias_free_base_in_name_and_norm_only(data):
    nobias = load_config(os.path.join(ROOT, "configs", f"ssd300_mobilenet1.0_{data}_nobias.yaml"))
    stock = load_config(os.path.join(ROOT, "configs",
                                     f"ssd300_mobilenet1.0_{data}_batchnorm.yaml"))
    from ssd_nobias.config import get, keys
    differ = {k for k in keys() if get(nobias, k) != get(stock, k)}
    assert differ == {"name", "output_dir", "model.norm"} and stock.model.norm == "batchnorm"


@pytest.mark.docs
def test_docs_config_md_is_the_schema():
    from ssd_nobias.config import config_markdown
    with open(os.path.join(ROOT, "docs", "config.md")) as f:
        assert f.read() == config_markdown(), "run: python -m ssd_nobias.config > docs/config.md"


def test_allowed_values_declared_in_the_schema_are_what_the_code_implements():
    from ssd_nobias import config
    from ssd_nobias.model import norm as nn, reparam, ssd as model
    assert set(config.NORMS) == set(nn.NORM_LAYERS)
    assert model.MODEL_NAMES is config.MODEL_NAMES and model.ACTIVATIONS is config.ACTIVATIONS
    assert reparam.WEIGHT_MODES is config.WEIGHT_MODES and nn.IMPLS is config.IMPLS
    for name in config.MODEL_NAMES:
        model.preset(name)  # each declared name has a layout


def test_the_schema_is_the_ground_floor():
    """ssd_nobias.config imports no other module of the package but errors and atomic, and
    neither MXNet nor GluonCV: anything can read a config."""
    import ast
    with open(os.path.join(ROOT, "ssd_nobias", "config.py")) as f:
        tree = ast.parse(f.read())
    imported = {(n.module or "") if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    assert {m for m in imported if not m.startswith("__")} <= {
        "difflib", "math", "os", "re", "sys", "dataclasses", "typing", "yaml", "yacs.config",
        "ssd_nobias.atomic", "ssd_nobias.errors"}


def test_a_shipped_config_loads_by_name_from_anywhere(tmp_path, monkeypatch):
    """An installed package has no configs/ folder at hand: --config demo_synthetic is the one
    it ships (the same file as configs/demo_synthetic.yaml of a checkout)."""
    monkeypatch.chdir(tmp_path)
    by_file = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"))
    for name in ("demo_synthetic", "demo_synthetic.yaml"):
        assert load_config(name).dump() == by_file.dump()
    with pytest.raises(ConfigError, match=r"'demo\.yaml' does not exist; shipped configs, by "
                                          r"name: demo_synthetic, neon_trees, ssd300_mobi"):
        load_config("demo.yaml")


def test_paths_made_absolute_mean_what_they_meant_where_the_run_started(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("demo_synthetic", ["data.root=data/syn", "output_dir=runs/a",
                                         "model.pretrained_base=~/base.params"])
    fixed = with_absolute_paths(cfg)
    assert fixed.data.root == str(tmp_path / "data" / "syn")
    assert fixed.output_dir == str(tmp_path / "runs" / "a")
    assert fixed.model.pretrained_base == os.path.expanduser("~/base.params")
    assert fixed.train.resume == "" and fixed.is_frozen()
    assert cfg.data.root == "data/syn"  # the config given is left as it was
    resumed = with_absolute_paths(load_config("demo_synthetic", ["train.resume=auto"]))
    assert resumed.train.resume == "auto"
    assert with_absolute_paths(fixed).dump() == fixed.dump()
