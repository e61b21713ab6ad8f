"""Post-processing declared in a model's metadata (watershed boundaries) and dihedral test-time
augmentation: the schema, a hand-computed flood, the Segmenter / CLI / Dask wiring, and the choice on
held-out ISBI slices."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conftest import require_shared  # noqa: E402
from onnx_fixtures import make_model  # noqa: E402

from sdk import Segmenter  # noqa: E402
from sdk.errors import InvalidInputError, ModelError  # noqa: E402
from sdk.inference import labels_from_proba  # noqa: E402
from sdk.instances import seeded_watershed  # noqa: E402
from sdk.model_metadata import ModelMetadata, Postprocessing  # noqa: E402
from sdk.postprocessing import apply_postprocessing  # noqa: E402

WATERSHED = Postprocessing("watershed", 0.6, {"chosen_on": "a test"})


@pytest.fixture(scope="module")
def boundary_model():
    return make_model("same", seed=4, metadata={"postprocessing": WATERSHED})[0]


@pytest.fixture(scope="module")
def plain_model():
    return make_model("same", seed=4)[0]


def _meta(classes: int = 2, **post) -> ModelMetadata:
    return ModelMetadata(spatial_dims=2, in_channels=1, class_names=tuple(f"c{i}" for i in range(classes)),
                         padding="same", input_size_multiple=1, foreground_class=classes - 1 if classes > 1 else 0,
                         postprocessing=Postprocessing(**post) if post else Postprocessing())


# -- the schema ---------------------------------------------------------------------------------------------


def test_postprocessing_round_trips_through_the_metadata():
    meta = _meta(boundaries="watershed", seed_threshold=0.7, selection={"held_out": {"rand_error": 0.02}})
    again = ModelMetadata.from_props(meta.to_props())
    assert again.postprocessing == meta.postprocessing and again.postprocessing.active
    assert not _meta().postprocessing.active


@pytest.mark.parametrize("fields, message", [
    ({"boundaries": "erode"}, "boundaries"),
    ({"boundaries": "watershed", "seed_threshold": 0.0}, "seed_threshold"),
    ({"boundaries": "watershed", "seed_threshold": 1.5}, "seed_threshold"),
    ({"boundaries": "watershed", "seed_threshold": float("nan")}, "seed_threshold"),
    ({"boundaries": "watershed", "selection": [1]}, "selection"),
    ({"boundaries": "watershed", "colour": "red"}, "unknown key"),
])
def test_bad_postprocessing_metadata_is_refused_on_load(fields, message):
    props = _meta().to_props()
    props["unet_sdk.postprocessing"] = json.dumps(fields)
    with pytest.raises(ModelError, match=message):
        ModelMetadata.from_props(props)


def test_watershed_boundaries_need_one_foreground_class():
    with pytest.raises(ModelError, match="1 or 2 classes"):
        _meta(classes=3, boundaries="watershed")
    _meta(classes=1, boundaries="watershed")  # a sigmoid channel is fine


# -- what it does ---------------------------------------------------------------------------------------------


def test_a_hand_computed_flood_puts_the_line_where_the_regions_meet():
    # seeds (>= 0.85) at both ends; the flood reaches 0.8 from the left and 0.75 from the right, and 0.7,
    # between them, has both regions as neighbours when it is popped: it becomes the line
    p = np.array([[0.9, 0.8, 0.7, 0.75, 0.95]], np.float32)
    np.testing.assert_array_equal(seeded_watershed(p, None, seed_threshold=0.85, lines=True), [[1, 1, 0, 2, 2]])
    proba = np.stack([1 - p, p])
    out = apply_postprocessing(proba.copy(), _meta(boundaries="watershed", seed_threshold=0.85))
    np.testing.assert_allclose(out[1], [[0.9, 0.8, 0.0, 0.75, 0.95]])
    np.testing.assert_allclose(out[0], [[0.1, 0.2, 1.0, 0.25, 0.05]], atol=1e-7)
    single = apply_postprocessing(p[None].copy(), _meta(classes=1, boundaries="watershed", seed_threshold=0.85))
    np.testing.assert_allclose(single[0], [[0.9, 0.8, 0.0, 0.75, 0.95]])


def test_without_seeds_nothing_changes():
    proba = np.stack([np.full((6, 6), 0.8, np.float32), np.full((6, 6), 0.2, np.float32)])
    out = apply_postprocessing(proba.copy(), _meta(boundaries="watershed", seed_threshold=0.9))
    np.testing.assert_array_equal(out, proba)


def test_a_broken_membrane_still_separates_its_two_cells():
    """Two cells with a membrane between them that the network misses in one place: every threshold of the
    raw map merges them; the boundaries split them again (hand-built)."""
    from sdk.metrics import isbi2012

    truth = np.ones((9, 9), np.uint8)
    truth[:, 4] = 0  # two cells, a vertical membrane
    p = np.where(truth > 0, 0.95, 0.02).astype(np.float32)
    p[:, 3] = p[:, 5] = 0.8  # cell pixels next to the membrane are less sure
    p[4, 4] = 0.9  # the gap: the network sees cell there
    out = apply_postprocessing(np.stack([1 - p, p]), _meta(boundaries="watershed", seed_threshold=0.93))
    # the seeds are the two sure halves; at the gap, (4, 3) is popped before (4, 5) (same value, reached
    # first), hands its label to the gap (0.9, popped next), and (4, 5) then meets both regions: the line
    # runs down the membrane and steps one pixel right at the gap
    lines = np.zeros((9, 9), bool)
    lines[:, 4] = True
    lines[4, 4], lines[4, 5] = False, True
    np.testing.assert_array_equal(out[1] == 0, lines)
    assert isbi2012(truth[None], p[None]).rand_error > 0.2  # merged at every threshold
    assert isbi2012(truth[None], out[1][None]).rand_error < 0.02  # only the one moved pixel is lost


# -- Segmenter, CLI, Dask ---------------------------------------------------------------------------------------


def test_segmenter_applies_the_models_postprocessing_per_whole_image(boundary_model, plain_model):
    images = np.random.default_rng(0).normal(size=(3, 70, 90)).astype(np.float32)
    raw = Segmenter(plain_model, tile=32).predict_proba(images)
    assert np.array_equal(Segmenter(boundary_model, tile=32, postprocess=False).predict_proba(images), raw)
    got = Segmenter(boundary_model, tile=32).predict_proba(images)
    for n in range(len(images)):  # each image floods on its own, after the tiles are merged
        expected = apply_postprocessing(raw[:, n].copy(), Segmenter(boundary_model).metadata)
        np.testing.assert_array_equal(got[:, n], expected)
    assert (got != raw).any()
    labels = Segmenter(boundary_model, tile=32).predict(images)
    np.testing.assert_array_equal(labels, labels_from_proba(got))
    one = Segmenter(boundary_model, tile=32).predict(images[1])
    np.testing.assert_array_equal(one, labels[1])


def test_cli_predict_no_postprocess(tmp_path, boundary_model):
    from sdk.cli.main import main
    from sdk.io import read_image

    model = tmp_path / "m.onnx"
    model.write_bytes(boundary_model)
    image = np.random.default_rng(1).normal(size=(64, 80)).astype(np.float32)
    np.save(tmp_path / "in.npy", image)
    for flag, post in (([], True), (["--no-postprocess"], False)):
        out = tmp_path / f"out_{post}.tif"
        assert main(["predict", str(tmp_path / "in.npy"), "-o", str(out), "-m", str(model), "--tile", "32"] + flag) == 0
        expected = Segmenter(boundary_model, tile=32, postprocess=post).predict(image)
        np.testing.assert_array_equal(read_image(out), expected)


def test_dask_prediction_floods_whole_images_and_equals_the_segmenter(boundary_model):
    pytest.importorskip("dask")
    from sdk.distributed import predict_dask

    images = np.random.default_rng(2).normal(size=(2, 96, 80)).astype(np.float32)
    result = predict_dask(boundary_model, images, tile=32, memory_budget="200MB")
    np.testing.assert_array_equal(result.compute(scheduler="synchronous"), Segmenter(boundary_model, tile=32).predict(images))
    raw = predict_dask(boundary_model, images, tile=32, postprocess=False, memory_budget="200MB")
    np.testing.assert_array_equal(raw.compute(scheduler="synchronous"),
                                  Segmenter(boundary_model, tile=32, postprocess=False).predict(images))
    with pytest.raises(InvalidInputError, match="whole image"):
        predict_dask(boundary_model, np.zeros((4000, 4000), np.float32), tile=32, memory_budget="20MB")


# -- test-time augmentation -----------------------------------------------------------------------------------


def dihedral_reference(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """The mean probabilities of the whole image turned and flipped 8 ways, each turned back."""
    views = []
    for turns in range(4):
        for flip in (False, True):
            view = np.ascontiguousarray(np.rot90(image[:, ::-1] if flip else image, turns))
            proba = np.rot90(segmenter.predict_proba(view), -turns, axes=(1, 2))
            views.append(proba[:, :, ::-1] if flip else proba)
    return np.mean(views, axis=0)


def test_dihedral_tta_is_the_mean_over_the_eight_symmetries(plain_model):
    image = np.random.default_rng(3).normal(size=(48, 48)).astype(np.float32)
    got = Segmenter(plain_model, tile=48, tta="dihedral").predict_proba(image)
    np.testing.assert_allclose(got, dihedral_reference(Segmenter(plain_model, tile=48), image), atol=2e-6)
    assert Segmenter(plain_model, tta=True).tta == "flips" and Segmenter(plain_model).tta == "none"
    with pytest.raises(InvalidInputError, match="tta"):
        Segmenter(plain_model, tta="rotations")


def test_dihedral_tta_turns_non_square_tiles(plain_model):
    # a quarter turn swaps the sides of a 40 x 96 tile: the network's output is checked against the turned shape
    image = np.random.default_rng(5).normal(size=(40, 96)).astype(np.float32)
    got = Segmenter(plain_model, tile=128, tta="dihedral").predict_proba(image)
    np.testing.assert_allclose(got, dihedral_reference(Segmenter(plain_model, tile=128), image), atol=2e-6)
    valid = make_model("valid", seed=3)[0]
    out = Segmenter(valid, tile=64, tta="dihedral").predict_proba(image)
    assert out.shape == (2, 40, 96) and np.isfinite(out).all()
    pytest.importorskip("dask")
    from sdk.distributed import predict_dask

    blocks = predict_dask(valid, image, output="proba", tile=64, tta="dihedral").compute(scheduler="synchronous")
    np.testing.assert_array_equal(blocks, out)


def test_dihedral_tta_in_3d_has_sixteen_views():
    from sdk.inference import tta_predictions

    calls = []

    def identity(batch):
        calls.append(batch.shape)
        return batch

    volume = np.random.default_rng(4).random((1, 1, 4, 6, 6)).astype(np.float32)
    out = tta_predictions(identity, volume, "none", "dihedral")
    assert len(calls) == 16
    np.testing.assert_allclose(out, volume, atol=1e-6)  # an equivariant network is unchanged by TTA


# -- choosing it on held-out data -----------------------------------------------------------------------------


def test_unet_export_postprocess_chooses_on_held_out_slices_and_records_it(tmp_path, shared_data):
    pytest.importorskip("torch")
    require_shared("isbi2012")
    from export.cli import main as export_main
    from sdk.metrics import isbi2012
    from sdk.models import resolve_model

    out = tmp_path / "chosen.onnx"
    argv = ["postprocess", str(resolve_model("isbi2012")), "-o", str(out), "--preset", "isbi2012",
            "--data-dir", str(shared_data),
            "--val-indices", "27:30", "--seed-thresholds", "0.6,0.8", "--threads", "2"]
    assert export_main(argv) == 0
    meta = Segmenter(str(out)).metadata
    record = meta.postprocessing.selection
    assert set(record["candidates"]) == {"none", "watershed 0.6", "watershed 0.8"}
    assert record["held_out"]["chosen"]["rand_error"] <= record["held_out"]["none"]["rand_error"]
    # the recorded scores are what a user gets from the written model on those slices
    from export.data import isbi2012_preset, load_stack

    preset = isbi2012_preset(shared_data / "isbi2012")
    images, labels = load_stack(preset.images)[27:30], load_stack(preset.labels)[27:30]
    proba = Segmenter(str(out), threads=2).predict_proba(images)[meta.foreground_class]
    scores = isbi2012((labels > 0).astype(np.uint8), proba)
    assert scores.rand_error == pytest.approx(record["held_out"]["chosen"]["rand_error"], abs=1e-12)
    assert scores.warping_error == pytest.approx(record["held_out"]["chosen"]["warping_error"], abs=1e-12)
    assert Segmenter(str(out)).metadata.weights_sha256 == Segmenter("isbi2012").metadata.weights_sha256
    before = out.read_bytes()
    assert export_main(argv) == 2  # refused up front: the file is left as it was
    assert out.read_bytes() == before


def test_tta_views_scores_each_view_and_their_means(shared_data, capsys):
    require_shared("isbi2012")
    from export.data import isbi2012_preset, load_stack
    from export.tta_views import main as tta_views
    from sdk.metrics import isbi2012

    assert tta_views(["isbi2012", "--preset", "isbi2012", "--data-dir", str(shared_data), "--val-indices", "28:30",
                      "--threads", "2"]) == 0
    rows = {row["view"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len(rows) == 10
    preset = isbi2012_preset(shared_data / "isbi2012")
    images, labels = load_stack(preset.images)[28:30], load_stack(preset.labels)[28:30]
    truth = (labels > 0).astype(np.uint8)
    for view, options in (("turn 0 flip -", {}), ("mean of 8 (dihedral)", {"tta": "dihedral"})):
        proba = Segmenter("isbi2012", postprocess=False, **options).predict_proba(images)[1]
        expected = isbi2012(truth, proba).rand_error
        assert rows[view]["raw"]["rand_error"] == pytest.approx(expected, abs=1e-6)
