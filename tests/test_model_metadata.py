"""The ONNX metadata schema: round trip, validation, size rules (checked by enumeration), normalisation."""
import json

import numpy as np
import pytest

from sdk.errors import InvalidInputError, ModelError
from sdk.model_metadata import PREFIX, ModelMetadata, Normalization


def make(**overrides):
    values = dict(
        spatial_dims=2,
        in_channels=1,
        class_names=("membrane", "cell"),
        padding="valid",
        input_size_multiple=16,
        input_size_offset=12,
        min_input_size=188,
        output_margin=92,
        tile_size=(572, 572),
        normalization=Normalization(mode="percentile", low=2.0, high=98.0, clip_low=-1.0, clip_high=2.0),
        training={"steps": 10, "data": "isbi2012"},
    )
    values.update(overrides)
    return ModelMetadata(**values)


def test_round_trip_through_string_props():
    meta = make()
    props = meta.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) and k.startswith(PREFIX) for k, v in props.items())
    assert ModelMetadata.from_props(props) == meta


def test_unknown_keys_from_newer_exporters_are_ignored():
    props = make().to_props()
    props[PREFIX + "future_field"] = json.dumps({"x": 1})
    props["other_tool.key"] = "value"
    assert ModelMetadata.from_props(props) == make()


@pytest.mark.parametrize(
    "props, fragment",
    [
        ({}, "no unet-sdk metadata"),
        ({PREFIX + "spatial_dims": "2"}, "lacks required keys"),
        ({**make().to_props(), PREFIX + "padding": "{broken"}, "not valid JSON"),
        ({**make().to_props(), PREFIX + "padding": '"reflect"'}, "padding must be one of"),
        ({**make().to_props(), PREFIX + "spatial_dims": "4"}, "spatial_dims must be 2 or 3"),
        ({**make().to_props(), PREFIX + "schema_version": "99"}, "newer than this unet-sdk"),
        ({**make().to_props(), PREFIX + "tile_size": "[500, 500]"}, "not an accepted input size"),
        ({**make().to_props(), PREFIX + "normalization": '{"mode": "magic"}'}, "unknown normalization"),
        ({**make().to_props(), PREFIX + "normalization": '{"bogus": 1}'}, "malformed"),
    ],
)
def test_invalid_metadata_is_a_model_error_naming_the_problem(props, fragment):
    with pytest.raises(ModelError, match=fragment):
        ModelMetadata.from_props(props)


def test_same_padding_must_not_declare_a_margin():
    with pytest.raises(ModelError, match="output_margin 0"):
        make(padding="same", output_margin=4, input_size_offset=0, min_input_size=16, tile_size=())


def test_valid_unet_size_rules_match_the_paper():
    # Ronneberger et al. 2015, Fig. 1: a 572x572 tile gives a 388x388 output.
    meta = make()
    assert meta.is_valid_input_size(572) and meta.output_size(572) == 388
    accepted = [n for n in range(150, 700) if meta.is_valid_input_size(n)]
    assert accepted == list(range(188, 700, 16))
    for n in range(1, 700):
        m = meta.valid_input_size_at_least(n)
        assert meta.is_valid_input_size(m) and m >= n
        assert not any(meta.is_valid_input_size(k) for k in range(n, m))
    with pytest.raises(InvalidInputError):
        meta.output_size(573)


def _reference_normalize(image, mode, **kw):
    x = image.astype(np.float64)
    out = []
    for c in x:
        if mode == "per_image_zscore":
            o, s = c.mean(), c.std()
        elif mode == "per_image_minmax":
            o, s = c.min(), c.max() - c.min()
        elif mode == "percentile":
            o = np.percentile(c, kw["low"])
            s = np.percentile(c, kw["high"]) - o
        else:
            o, s = kw["mean"], kw["std"]
        out.append((c - o) / max(s, 1e-6))
    return np.stack(out)


@pytest.mark.parametrize(
    "mode, kw",
    [
        ("per_image_zscore", {}),
        ("per_image_minmax", {}),
        ("percentile", {"low": 1.0, "high": 99.0}),
        ("fixed", {"mean": 100.0, "std": 20.0}),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32])
def test_normalization_matches_a_float64_reference(mode, kw, dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((2, 17, 23)) * 200).astype(dtype)
    got = Normalization(mode=mode, **kw).apply(image)
    assert got.dtype == np.float32 and got.shape == image.shape
    np.testing.assert_allclose(got, _reference_normalize(image, mode, **kw), rtol=1e-5, atol=1e-5)


def test_constant_image_does_not_divide_by_zero():
    out = Normalization().apply(np.full((1, 8, 8), 7, np.uint8))
    assert np.isfinite(out).all() and np.all(out == 0)
