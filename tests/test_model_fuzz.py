"""Bounded, seeded fuzzing of Segmenter (issue 11, "keep it that way"): random images and corrupted model
bytes give a valid result or a typed unet-sdk error, never another exception. A few hundred cases, seconds."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.errors import UnetSdkError  # noqa: E402
from sdk.model_metadata import PREFIX  # noqa: E402

DTYPES = ["u1", "i1", "u2", ">u2", "i4", "<i8", "u8", "f2", "f4", ">f4", "f8", "?", "c8", "U3", "O"]


def _stamped(model: bytes) -> bytes:
    """``model`` with its digest in the metadata (the documented definition: SHA-256 of the graph)."""
    proto = onnx.load_from_string(model)
    digest = hashlib.sha256(proto.graph.SerializeToString()).hexdigest()
    for prop in proto.metadata_props:
        if prop.key == PREFIX + "weights_sha256":
            prop.value = f'"{digest}"'
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def segmenters():
    return [
        Segmenter(make_model("pointwise", seed=1)[0], tile=16, batch_size=2),
        Segmenter(make_model("same", seed=2)[0], tile=24, blend="gaussian"),
        Segmenter(make_model("valid", seed=3)[0], tile=12),
        Segmenter(make_model("pointwise", in_channels=3, num_classes=3, seed=4)[0], tile=32),
    ]


def _random_image(rng: np.random.Generator):
    dtype = np.dtype(DTYPES[rng.integers(len(DTYPES))])
    ndim = int(rng.integers(0, 6))
    shape = tuple(int(n) for n in rng.integers(0, 20 if ndim < 4 else 9, ndim))
    if ndim >= 3 and rng.random() < 0.3:
        shape = shape[:-1] + (int(rng.choice([1, 2, 3, 4])),)  # channel-like trailing axes
    scale = 10.0 ** rng.uniform(-300, 300) if rng.random() < 0.3 else 100.0
    values = rng.normal(0, 1, shape) * scale
    if dtype.kind == "f" and values.size and rng.random() < 0.2:
        values.flat[rng.integers(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
    with np.errstate(all="ignore"):
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.clip(np.nan_to_num(values), info.min, info.max)
        image = values.astype(dtype)
    if ndim >= 2 and rng.random() < 0.3:
        image = np.swapaxes(image, 0, 1)[::-1]  # a strided, non-contiguous view
    return image


def _check_result(seg: Segmenter, image, proba) -> None:
    shape, _ = seg.output_spec(np.shape(image), proba=True)
    assert proba.shape == shape and proba.dtype == np.float32
    assert np.isfinite(proba).all() and proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, atol=1e-5)


def test_random_images_give_probabilities_or_typed_errors(segmenters):
    rng = np.random.default_rng(2026)
    outcomes = {"result": 0, "typed error": 0}
    for _ in range(200):
        seg = segmenters[rng.integers(len(segmenters))]
        image = _random_image(rng)
        try:
            proba = seg.predict_proba(image)
        except UnetSdkError:
            outcomes["typed error"] += 1
            continue
        _check_result(seg, image, proba)
        outcomes["result"] += 1
    assert min(outcomes.values()) > 25, outcomes  # both paths were exercised


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(4)
    buf = bytearray(data)
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 4))):
            buf[rng.integers(len(buf))] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncation
        del buf[int(rng.integers(len(buf))):]
    elif kind == 2:  # a run of random bytes
        start = int(rng.integers(len(buf)))
        run = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        buf[start : start + len(run)] = run
    else:  # an inserted byte (shifts every later field)
        buf.insert(int(rng.integers(len(buf))), int(rng.integers(256)))
    return bytes(buf)


@pytest.mark.parametrize("kind", ["same", "valid"])
def test_corrupted_model_bytes_load_correctly_or_raise_model_errors(kind):
    original = make_model(kind, seed=11)[0]
    stamped = _stamped(original)
    graph = onnx.load_from_string(stamped).graph.SerializeToString()
    image = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    rng = np.random.default_rng(7)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(80):
        source = stamped if trial % 2 else original
        data = _corrupt(source, rng)
        try:
            seg = Segmenter(data, threads=1)
            proba = seg.predict_proba(image)
        except UnetSdkError:
            outcomes["refused"] += 1
            continue
        _check_result(seg, image, proba)
        if seg.weights_verified:  # a verified model runs exactly the original graph
            assert onnx.load_from_string(data).graph.SerializeToString() == graph
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 20, outcomes
