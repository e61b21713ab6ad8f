"""Sanity of the explanations beyond agreement with autograd (no torch): a task with a known cause, the
model-parameter randomisation test of Adebayo et al. 2018, and class/region dependence on the shipped model.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from explain_fixtures import BLOCK, marker_model  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from export.explain_graph import add_explanation, unet_layers  # noqa: E402
from sdk import Segmenter  # noqa: E402
from sdk.errors import RuntimeUnavailableError  # noqa: E402
from sdk.io import read_image  # noqa: E402
from sdk.models import default_model_path, sample_image_path  # noqa: E402


@pytest.fixture(scope="module")
def marked_scene():
    image = np.zeros((96, 96), np.float32)
    image[40:52, 16:28] = 1.0  # the square to explain
    image[40:44, 36:40] = -1.0  # its marker, 1-2 blocks to the right
    image[72:84, 64:76] = 1.0  # an equally bright square with no marker near: not marked
    return image


def test_marker_network_does_what_it_was_built_for(marked_scene):
    labels = Segmenter(marker_model(), device="cpu").predict(marked_scene)
    assert labels[40:52, 16:28].all() and labels.sum() == 144  # only the square beside the marker


def test_known_cause_holds_the_map(marked_scene):
    """Explaining "marked" on the square: at the context layer the map lies on the marker's neighbourhood,
    not on the square nor on the distractor (brightness is there, but the score does not use it)."""
    segmenter = Segmenter(marker_model(), device="cpu")
    region = np.zeros(marked_scene.shape, bool)
    region[40:52, 16:28] = True
    heat = segmenter.explain(marked_scene, target_class="marked", region=region, layer="context")
    rows, cols = np.indices(heat.shape)
    # the layer holds the marker count spread over 5x5 blocks: the map can be no sharper than that
    near_marker = np.maximum(np.abs(rows - 41.5), np.abs(cols - 37.5)) <= 3 * BLOCK
    distractor = np.zeros(heat.shape, bool)
    distractor[68:88, 60:80] = True
    assert heat.sum() > 0
    assert heat[near_marker].sum() / heat.sum() > 0.95  # near_marker covers 26 % of the image
    assert heat[distractor].sum() == 0
    centroid = np.array([(rows * heat).sum(), (cols * heat).sum()]) / heat.sum()
    assert np.hypot(*(centroid - (41.5, 37.5))) < BLOCK  # centred on the cause ...
    assert np.hypot(*(centroid - (45.5, 21.5))) > 1.5 * BLOCK  # ... not on the square it explains
    # a class whose score the marker lowers has nothing positive to show there
    assert not segmenter.explain(marked_scene, target_class="plain", region=region, layer="context")[near_marker].any()


def _without_digest(proto):
    kept = [p for p in proto.metadata_props if p.key != "unet_sdk.weights_sha256"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    return proto


@pytest.fixture(scope="module")
def shipped():
    proto = onnx.load(str(default_model_path()))
    crop = read_image(sample_image_path())[192:320, 192:320]
    return proto, {"bottleneck": unet_layers(proto)["bottleneck"]}, crop


def _bottleneck_map(proto, layers, image, region=None, target_class=None):
    segmenter = Segmenter(add_explanation(proto, layers=layers).SerializeToString(), device="cpu")
    return segmenter.explain(image, region=np.ones(image.shape, bool) if region is None else region,
                             target_class=target_class)


def test_randomising_weights_top_down_destroys_the_map(shipped):
    """Adebayo et al. 2018, cascading model-parameter randomisation: replacing the trained weights from the
    head down by random ones of the same scale must change the map (rank correlation well below 1). A method
    that ignores the weights (edges, input gradients of a fixed filter) keeps rho = 1 and fails."""
    base, layers, image = shipped
    trained = _bottleneck_map(base, layers, image)
    assert trained.std() > 0
    proto = _without_digest(onnx.ModelProto.FromString(base.SerializeToString()))
    assert spearmanr(trained.ravel(), _bottleneck_map(proto, layers, image).ravel())[0] > 0.999999
    rng = np.random.default_rng(0)
    cascade = ["head", "up_blocks.3", "up.3", "up_blocks.2", "up.2", "up_blocks.1", "up.1", "up_blocks.0", "up.0"]
    checked = {"head", "up_blocks.3", "up_blocks.1", "up.0"}
    for stage in cascade:
        for init in proto.graph.initializer:
            if init.name.startswith(f"net.{stage}."):
                weights = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(
                    (rng.standard_normal(weights.shape) * weights.std()).astype(weights.dtype), init.name))
        if stage in checked:
            randomised = _bottleneck_map(proto, layers, image)
            rho = spearmanr(trained.ravel(), randomised.ravel())[0] if randomised.std() > 0 else 0.0
            assert rho < 0.5, (stage, rho)


def test_map_follows_class_and_region(shipped):
    base, layers, image = shipped
    left, right = np.zeros(image.shape, bool), np.zeros(image.shape, bool)
    left[32:96, 8:56], right[32:96, 72:120] = True, True
    maps = {
        "cell, left": _bottleneck_map(base, layers, image, left, "cell"),
        "cell, right": _bottleneck_map(base, layers, image, right, "cell"),
        "membrane, left": _bottleneck_map(base, layers, image, left, "membrane"),
    }
    for a in maps:
        for b in maps:
            if a < b:
                assert spearmanr(maps[a].ravel(), maps[b].ravel())[0] < 0.9, (a, b)


@pytest.mark.cuda
def test_cuda_explanations_match_the_cpu(marked_scene):
    try:
        cuda = Segmenter(marker_model(), device="cuda")
    except RuntimeUnavailableError as exc:
        pytest.skip(f"CUDA is not usable here: {exc}")
    cpu = Segmenter(marker_model(), device="cpu")
    for layer in ("features", "context", "decision"):
        expected = cpu.explain(marked_scene, layer=layer)
        np.testing.assert_allclose(cuda.explain(marked_scene, layer=layer), expected, rtol=0,
                                   atol=1e-4 * expected.max())


def test_explanation_tiles_fit_the_memory_budget(monkeypatch):
    """An explanation run needs several times predict's memory: on the CPU the tiles shrink to fit the budget
    that sizes predict's tiles, keeping the shared halo in pixels; small tiles are kept as they are."""
    from sdk import sizing
    from sdk.explain import EXPLAIN_MEMORY_FACTOR, explanation_tiles

    monkeypatch.setenv(sizing.BUDGET_VARIABLE, "2GB")
    monkeypatch.setattr(sizing, "tile_bytes_per_pixel", lambda runtime, key=None: 1000.0)  # measured in life
    segmenter = Segmenter(marker_model(), device="cpu", tile=1024, overlap=0.25)
    tile, overlap = explanation_tiles(segmenter, (2048, 2048))
    # predict's sizing rule (tested with sdk.sizing) applied to an explanation's bytes per pixel
    side = sizing.largest_tile(segmenter.metadata, 1000.0 * EXPLAIN_MEMORY_FACTOR, sizing.parse_bytes("2GB"),
                               spatial_dims=2)
    assert tile == (side, side) and 256 < side < 1024
    assert overlap * side == pytest.approx(0.25 * 1024)  # the same 256 shared pixels
    assert explanation_tiles(segmenter, (256, 256)) == ((1024, 1024), 0.25)  # one small tile: unchanged


@pytest.mark.parametrize("entry,match", [
    ("{", "malformed"),
    ({"schema_version": 1, "default_layer": "a", "layers": {"a": {"channels": 1, "stride": 1, "graph": "!!"}}},
     "malformed"),
    ({"schema_version": 2, "default_layer": "a", "layers": {"a": {"channels": 1, "stride": 1, "graph": ""}}},
     "newer"),
    ({"schema_version": 1, "default_layer": "b", "layers": {"a": {"channels": 1, "stride": 1, "graph": ""}}},
     "default layer"),
    ({"schema_version": 1, "default_layer": "a", "layers": {"a": {"channels": 1, "stride": 0, "graph": ""}}},
     "stride"),
])
def test_malformed_explanation_metadata_is_a_model_error(entry, match):
    import json

    from sdk.errors import ModelError
    from sdk.explain import METADATA_KEY, Explanation

    text = entry if isinstance(entry, str) else json.dumps(entry)
    with pytest.raises(ModelError, match=match):
        Explanation.from_props({METADATA_KEY: text}, "m.onnx")


def test_one_segmenter_explains_from_many_threads(marked_scene):
    from concurrent.futures import ThreadPoolExecutor

    segmenter = Segmenter(marker_model(), device="cpu")
    jobs = [("context", "marked"), ("features", "marked"), ("decision", "marked"), ("context", "plain")] * 2
    region = np.zeros(marked_scene.shape, bool)
    region[40:52, 16:28] = True

    def explain(job):
        return segmenter.explain(marked_scene, layer=job[0], target_class=job[1], region=region)

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(explain, jobs))
    for job, heat in zip(jobs, together):
        np.testing.assert_array_equal(heat, explain(job))


def test_shipped_models_carry_explanations():
    """Both embedded models explain out of the box; the int8 twin's map (its own backward graph, quantizers as
    clipped straight-through masks) agrees with the fp32 model's."""
    from sdk.explain import explainable_layers

    image = read_image(sample_image_path())[128:384, 128:384]
    fp32, int8 = Segmenter("isbi2012", device="cpu"), Segmenter("isbi2012-int8", device="cpu")
    region = fp32.predict(image) == 1
    for segmenter in (fp32, int8):
        assert list(explainable_layers(segmenter)) == ["bottleneck", "down.0", "down.1", "down.2", "down.3",
                                                       "up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3"]
    for layer in ("bottleneck", "up_blocks.2"):
        a, b = fp32.explain(image, region=region, layer=layer), int8.explain(image, region=region, layer=layer)
        assert a.max() > 0 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
