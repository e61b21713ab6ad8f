"""CUDA paths (IOBinding, cuDNN settings, auto-selection). Skipped unless the CUDA provider really loads."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.errors import RuntimeUnavailableError  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def model():
    return make_model("same", seed=41, features=8)[0]


@pytest.fixture(scope="module")
def cuda_segmenter(model):
    try:
        return Segmenter(model, device="cuda", tile=64, overlap=0.25, blend="gaussian")
    except RuntimeUnavailableError as exc:
        pytest.skip(f"CUDA is not usable here: {exc}")


def test_cuda_matches_cpu(cuda_segmenter, model):
    assert cuda_segmenter.device == "cuda" and cuda_segmenter.providers[0] == "CUDAExecutionProvider"
    assert cuda_segmenter.batch_size == 8
    image = np.random.default_rng(0).normal(size=(300, 257)).astype(np.float32)
    cpu = Segmenter(model, device="cpu", tile=64, overlap=0.25, blend="gaussian").predict_proba(image)
    np.testing.assert_allclose(cuda_segmenter.predict_proba(image), cpu, atol=1e-4)


def test_auto_picks_cuda_when_it_loads(cuda_segmenter, model):
    assert Segmenter(model).device == "cuda"


def test_cuda_segmenter_shared_by_threads(cuda_segmenter):
    rng = np.random.default_rng(1)
    images = [rng.normal(size=(128 + 16 * i, 100)).astype(np.float32) for i in range(8)]
    alone = [cuda_segmenter.predict_proba(image) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        shared = list(pool.map(cuda_segmenter.predict_proba, images))
    for a, b in zip(alone, shared):
        np.testing.assert_allclose(a, b, atol=1e-6)
