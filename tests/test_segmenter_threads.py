"""One Segmenter shared by 8 threads gives the same results as used alone."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402


@pytest.mark.parametrize("blend", ["none", "gaussian"])
def test_eight_threads_share_one_segmenter(blend):
    model, _ = make_model("same", seed=21)
    seg = Segmenter(model, tile=32, overlap=0.5, blend=blend, batch_size=2, threads=1)
    rng = np.random.default_rng(0)
    # different sizes and contents per thread, so any shared scratch state would mix them up
    images = [rng.normal(size=(40 + 7 * i, 90 - 5 * i)).astype(np.float32) for i in range(8)]
    alone = [seg.predict_proba(image) for image in images]

    def work(i: int) -> list[np.ndarray]:
        return [seg.predict_proba(images[i]) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        shared = list(pool.map(work, range(8)))
    for expected, results in zip(alone, shared):
        for result in results:
            np.testing.assert_array_equal(result, expected)
