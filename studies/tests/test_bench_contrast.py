"""studies/scripts/contrast.py's contrast change: pixels scaled around the mean are the normalized
input
scaled by a, and per-image normalization takes the change away."""
import os
import sys

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.data.transforms import ValTransform
from ssd_nobias.data.preprocess import Preprocess

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from contrast import Contrast  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("a", [0.25, 4.0])
def test_contrast_scales_the_normalized_input_and_per_image_removes_it(a):
    rng = np.random.RandomState(0)
    # float pixels (integer values): the resize then rounds neither path to uint8
    images = [(mx.nd.array(rng.randint(0, 256, (30, 40, 3)), dtype=np.float32),
               np.zeros((1, 5))) for _ in range(2)]
    changed = Contrast(images, np.array([1.0, a]), MEAN)
    plain = ValTransform(Preprocess(24, MEAN, STD))
    per_image = ValTransform(Preprocess(24, MEAN, STD, per_image=True))
    x = plain(*images[1])[0].asnumpy()
    np.testing.assert_allclose(plain(*changed[1])[0].asnumpy(), a * x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(plain(*changed[0])[0].asnumpy(), plain(*images[0])[0].asnumpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per_image(*changed[1])[0].asnumpy(),
                               per_image(*images[1])[0].asnumpy(), rtol=1e-4, atol=1e-4)
