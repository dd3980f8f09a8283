"""audit_params on GluonCV's stock-BN MobileNet (every pair flagged) and on our bias-free models
(none flagged), by file order and by graph, and the script's exit status."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model as gluoncv_model

from ssd_nobias import get_model
from ssd_nobias.export.audit import audit, expected
from ssd_nobias.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def randomize_norms(net, shifts=True):
    rng = np.random.RandomState(0)
    for name, p in net.collect_params().items():
        if shifts and name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.array(rng.normal(0, 0.5, p.shape)))
        elif name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2, p.shape)))


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """GluonCV's mobilenet0.25 with trained-looking BatchNorm statistics, saved two ways."""
    base = tmp_path_factory.mktemp("stock")
    net = gluoncv_model("mobilenet0.25", pretrained=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    randomize_norms(net)
    net.save_parameters(str(base / "gluon.params"))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    net.export(str(base / "exported"))
    return base


def test_stock_batchnorm_model_flags_every_pair(stock):
    report = audit(str(stock / "gluon.params"))
    pairs = [r for r in report if r.norm is not None]
    assert len(pairs) == 27  # conv0 and 13 depthwise/pointwise pairs
    assert all(not r.bias_free and r.mean > 0 and r.beta > 0 for r in pairs)
    assert [r.conv for r in expected(report, [])] == [r.conv for r in pairs]


def test_symbol_pairing_agrees_with_file_order(stock):
    by_graph = audit(str(stock / "exported-0000.params"), str(stock / "exported-symbol.json"))
    by_order = audit(str(stock / "gluon.params"))
    assert [r.folded for r in by_graph if r.norm] == pytest.approx(
        [r.folded for r in by_order if r.norm])
    assert sum(r.norm is not None for r in by_graph) == 27


def test_bias_free_model_flags_none_and_folded_bias_is_exactly_zero(tmp_path):
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a", "b"])
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    randomize_norms(net, shifts=False)  # NoBiasBatchNorm has no beta and never moves its mean
    net.save_parameters(str(tmp_path / "ours.params"))
    report = audit(str(tmp_path / "ours.params"))
    pairs = expected(report, [])
    assert len(pairs) == 35 and all(r.folded == 0.0 and r.beta is None for r in pairs)
    heads = expected(report, ["*predictor*"])
    assert len(heads) == 12 and not any(r.bias_free for r in heads)


@pytest.mark.slow
@pytest.mark.subprocess
def test_script_exit_status_and_errors(stock, tmp_path):
    script = os.path.join(ROOT, "scripts", "audit_params.py")
    done = subprocess.run([sys.executable, script, "--params", str(stock / "gluon.params")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "0 of 27 asked for are" in done.stdout
    done = subprocess.run([sys.executable, script, "--params", str(stock / "gluon.params"),
                           "--expect-bias-free", "nothing*"], capture_output=True, text=True)
    assert done.returncode == 0
    (tmp_path / "junk.params").write_bytes(b"not a params file")
    done = subprocess.run([sys.executable, script, "--params", str(tmp_path / "junk.params")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "junk.params" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(DataError, match="no convolution"):
        mx.nd.save(str(tmp_path / "none.params"), {"x": mx.nd.ones(3)})
        audit(str(tmp_path / "none.params"))
