"""The package's floors: each subpackage imports only from those below it, no module imports
itself back through others, nothing imports the studies, and inference loads without the
training side."""
import ast
import os
import subprocess
import sys

import pytest

from ssd_nobias.config import save_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "ssd_nobias")
# Bottom to top. The ground floor's modules sit at the package's top level.
FLOORS = ["", "model", "data", "runtime", "evaluation", "engine", "export", "commands"]
TOP = {"ssd_nobias"}  # the lazy public names


def modules():
    """{dotted module: the ssd_nobias modules it imports}, from the source."""
    files = _files()
    graph = {}
    for base, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(base, name)
            dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            dotted = dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted
            with open(path) as f:
                tree = ast.parse(f.read())
            found = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == \
                        "ssd_nobias":
                    assert node.level == 0, f"{dotted}: relative import"
                    for alias in node.names:  # `from ssd_nobias.model import native`
                        full = f"{node.module}.{alias.name}"
                        found.add(full if full.replace(".", os.sep) + ".py" in files else
                                  node.module)
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names if a.name.split(".")[0] == "ssd_nobias"}
            graph[dotted] = found
    return graph


def _files():
    out = set()
    for base, _, names in os.walk(PACKAGE):
        out |= {os.path.relpath(os.path.join(base, n), ROOT) for n in names}
    return out


def floor(module: str) -> int:
    if module in TOP:
        return len(FLOORS)
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in FLOORS:
        return 0  # a top-level module: the ground floor
    return FLOORS.index(parts[1])


def test_every_import_goes_down_or_across():
    graph = modules()
    assert {m.split(".")[1] for m in graph if m.count(".") == 2} == set(FLOORS[1:])
    up = [(m, d) for m, deps in graph.items() for d in deps if floor(d) > floor(m)]
    assert up == []


def test_nothing_in_the_package_imports_the_studies():
    """The studies (studies/) build on the package; the wheel holds none of their code."""
    found = []
    for base, _, names in os.walk(PACKAGE):
        for name in (n for n in names if n.endswith(".py")):
            with open(os.path.join(base, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                imported = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names] if isinstance(node, ast.Import) else []
                found += [(name, m) for m in imported if m.split(".")[0] == "ssd_nobias_studies"]
    assert found == []
    assert not os.path.exists(os.path.join(PACKAGE, "analysis"))


def test_no_import_cycle():
    graph = modules()
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if d in TOP or d not in graph:
                continue
            assert state.get(d) != "open", " -> ".join(path + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.subprocess
def test_inference_runs_with_the_training_side_unimportable(alive_model, tmp_path):
    cfg, _, deploy, onnx_path = alive_model
    config = str(tmp_path / "config.yaml")
    save_config(cfg, config)
    code = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        parts = name.split(".")
        if parts[0] == "ssd_nobias" and parts[1:2] in (["engine"], ["export"], ["evaluation"]):
            raise ImportError("training side: " + name)
sys.meta_path.insert(0, Refuse())
import mxnet as mx
import numpy as np
from ssd_nobias.config import load_config
from ssd_nobias.runtime.predictors import load_predictor
from ssd_nobias.runtime import detect, host
cfg = load_config({config!r})
for kind in ({{"deploy_dir": {deploy!r}}}, {{"onnx_path": {onnx_path!r}}}):
    model, classes, ctx = load_predictor(cfg, **kind)
    ids, scores, boxes = model(mx.nd.zeros((1, 3, 300, 300)))
    print(classes, np.asarray(boxes.asnumpy() if hasattr(boxes, "asnumpy") else boxes).shape)
print(sorted(m for m in sys.modules if m.startswith("ssd_nobias.")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("['circle', 'square', 'triangle', 'star']") and len(lines) == 3
    loaded = eval(lines[-1])
    assert not [m for m in loaded if m.split(".")[1] in ("engine", "export", "evaluation")]
