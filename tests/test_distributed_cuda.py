"""Distributed prediction on CUDA workers: each worker process gets one GPU (``cuda:N``) and runs the
single-machine CUDA runtime (IOBinding). Skipped unless ONNX Runtime's CUDA provider really loads."""
import logging

import numpy as np
import pytest

from onnx_fixtures import make_model
from sdk import Segmenter
from sdk.errors import RuntimeUnavailableError

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def model():
    model = make_model("same", seed=43, features=8)[0]
    try:
        Segmenter(model, device="cuda")
    except RuntimeUnavailableError as exc:
        pytest.skip(f"CUDA is not usable here: {exc}")
    return model


def test_cuda_workers_match_the_single_machine_prediction(model):
    from sdk.distributed import predict_dask

    image = np.random.default_rng(0).normal(size=(3, 300, 257)).astype(np.float32)
    single = Segmenter(model, device="cuda", tile=128, overlap=0.25, blend="gaussian").predict_proba(image)
    cpu = Segmenter(model, device="cpu", tile=128, overlap=0.25, blend="gaussian").predict_proba(image)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        result = predict_dask(model, image, output="proba", device="cuda", tile=128, overlap=0.25, blend="gaussian",
                              client=client)
        computed = client.compute(result).result()

        def devices():
            from sdk.distributed import workers

            return sorted({(s.device, s._runtime.device_id) for s in workers._cache.values()})

        used = client.run(devices)
    # batches group different tiles than on one machine, and cuDNN picks algorithms per batch shape
    np.testing.assert_allclose(computed, single, atol=1e-4)
    np.testing.assert_allclose(computed, cpu, atol=1e-4)
    assert all(entries and all(device == "cuda" for device, _ in entries) for entries in used.values())
