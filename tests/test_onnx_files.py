"""ONNX files from elsewhere read nothing outside themselves (CVE-2024-27318): a model whose
tensor keeps its values in an external file is refused by every loader, by name."""
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ssd_nobias.errors import DataError  # noqa: E402
from ssd_nobias.onnx_files import load_onnx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = b"secret bytes outside the model's folder"


def conv_model(weight: np.ndarray):
    """data (1, 3, 8, 8) -> a 1x1 Conv with `weight`, no bias."""
    node = helper.make_node("Conv", ["data", "w"], ["out"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture
def hostile(tmp_path):
    """models/evil.onnx, whose weight's location climbs out of models/ to a file beside it."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET[:12].ljust(12, b"\0"))  # 3 float32 values
    model = conv_model(np.zeros((1, 3, 1, 1), np.float32))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="sub/../../secret.bin")
    (tmp_path / "models" / "sub").mkdir(parents=True)
    path = tmp_path / "models" / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_a_plain_model_loads_and_one_with_external_data_is_refused_by_name(hostile, tmp_path):
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(conv_model(np.ones((1, 3, 1, 1), np.float32)).SerializeToString())
    weight = load_onnx(str(plain)).graph.initializer[0]
    np.testing.assert_array_equal(numpy_helper.to_array(weight), np.ones((1, 3, 1, 1)))
    with pytest.raises(DataError, match=r"evil\.onnx: tensor 'w' keeps its values in an "
                                        r"external file"):
        load_onnx(hostile)
    with pytest.raises(DataError, match="does not exist"):
        load_onnx(str(tmp_path / "none.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not protobuf at all \xff\xfe")
    with pytest.raises(DataError, match="cannot load ONNX model .*junk.onnx"):
        load_onnx(str(tmp_path / "junk.onnx"))


def test_every_loader_refuses_it(hostile):
    pytest.importorskip("onnxruntime")
    from ssd_nobias.export.proof import prove
    from ssd_nobias.runtime.integer import IntegerAccelerator
    from ssd_nobias.runtime.onnxrt import optimized_ops, session

    for load in (session, optimized_ops, prove, IntegerAccelerator):
        with pytest.raises(DataError, match="external file"):
            load(hostile)


@pytest.mark.subprocess
def test_detect_on_it_ends_in_one_line_and_writes_nothing(hostile, tmp_path):
    pytest.importorskip("onnxruntime")
    photo = tmp_path / "photo.png"
    import cv2
    cv2.imwrite(str(photo), np.zeros((32, 32, 3), np.uint8))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "detect.py"),
                           "--onnx", hostile, str(photo), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "external file" in done.stderr
    assert SECRET[:12].decode() not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()
