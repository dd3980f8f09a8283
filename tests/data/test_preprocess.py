"""The preprocessing object: one contract from the config to the export's preprocess.json and
back, applied by the val transform."""
import json

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.config import load_config
from ssd_nobias.data.transforms import ValTransform
from ssd_nobias.data.preprocess import PREPROCESS_FILE, Preprocess
from ssd_nobias.errors import DataError


@pytest.mark.parametrize("normalize", ["dataset", "per_image"])
def test_config_to_file_and_back(tmp_path, normalize):
    cfg = load_config(None, ["model.name=ssd_512_mobilenet1.0_voc", f"data.normalize={normalize}",
                             "data.mean=[0.5,0.4,0.3]"])
    prep = Preprocess.from_config(cfg)
    assert prep == Preprocess(512, (0.5, 0.4, 0.3), (0.229, 0.224, 0.225),
                              normalize == "per_image")
    prep.save(str(tmp_path), ["a", "b"])
    with open(tmp_path / PREPROCESS_FILE) as f:
        written = json.load(f)
    assert written["shape"] == [1, 3, 512, 512] and written["classes"] == ["a", "b"]
    assert written["normalize"] == normalize
    assert Preprocess.load(str(tmp_path)) == prep


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / PREPROCESS_FILE).write_text('{"shape": [1, 3]')
    with pytest.raises(DataError, match=r"preprocess\.json \(written by `ssd-nobias export`\)"):
        Preprocess.load(str(tmp_path))
    with pytest.raises(DataError, match="missing or unreadable"):
        Preprocess.load(str(tmp_path / "nowhere"))


def test_the_val_transform_applies_it():
    image = mx.nd.array(np.full((10, 20, 3), 255 * 0.75), dtype=np.uint8)
    x, _, size = ValTransform(Preprocess(8, (0.5,) * 3, (0.25,) * 3))(image, np.zeros((0, 5)))
    assert x.shape == (3, 8, 8) and size.tolist() == [20, 10]
    np.testing.assert_allclose(x.asnumpy(), (191 / 255 - 0.5) / 0.25, rtol=1e-6)
