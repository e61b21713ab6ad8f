"""Sanity of the explanations beyond agreement with autograd (no torch): a task with a known cause, the
model-parameter randomisation test of Adebayo et al. 2018, and class/region dependence on the shipped model.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from export.explain_graph import add_explanation, unet_layers  # noqa: E402
from sdk import Segmenter  # noqa: E402
from sdk.io import read_image  # noqa: E402
from sdk.model_metadata import ModelMetadata, Normalization  # noqa: E402
from sdk.models import default_model_path, sample_image_path  # noqa: E402

BLOCK = 8  # pooling of the hand-made network: its context layer sees 8x8 blocks


def marker_model() -> bytes:
    """A U-Net-shaped network, weights set by hand, that labels a bright square "marked" only when a dark
    marker lies within two 8x8 blocks of it (a cause elsewhere in the tile).

    features = ReLU([x, -x]) (bright, dark); context = ReLU(conv5x5(maxpool8(features))): channel 0 the
    block's brightness (unused downstream), channel 1 the number of marker blocks within 2 blocks;
    decision = ReLU(bright + upsampled marker count - 1.5); logits = [0, 20 decision - 4] -> softmax.
    """
    d = 2
    ident = np.zeros((2, 2, 5, 5), np.float32)
    ident[0, 0, 2, 2] = 1.0  # brightness of the block itself
    ident[1, 1] = 1.0  # markers in the 5x5 blocks around
    up = np.zeros((2, 2, BLOCK, BLOCK), np.float32)
    up[0, 0], up[1, 1] = 1.0, 1.0
    weights = {
        "features.w": np.array([[[[1.0]]], [[[-1.0]]]], np.float32), "features.b": np.zeros(2, np.float32),
        "context.w": ident, "context.b": np.zeros(2, np.float32), "up.w": up,
        "decision.w": np.array([1, 0, 0, 1], np.float32).reshape(1, 4, 1, 1), "decision.b": np.array([-1.5], np.float32),
        "head.w": np.array([0, 20], np.float32).reshape(2, 1, 1, 1), "head.b": np.array([0, -4], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "features.w", "features.b"], ["features.pre"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["features.pre"], ["features"]),
        helper.make_node("MaxPool", ["features"], ["pooled"], kernel_shape=[BLOCK] * d, strides=[BLOCK] * d),
        helper.make_node("Conv", ["pooled", "context.w", "context.b"], ["context.pre"], kernel_shape=[5, 5], pads=[2] * 4),
        helper.make_node("Relu", ["context.pre"], ["context"]),
        helper.make_node("ConvTranspose", ["context", "up.w"], ["up"], kernel_shape=[BLOCK] * d, strides=[BLOCK] * d),
        helper.make_node("Concat", ["features", "up"], ["joined"], axis=1),
        helper.make_node("Conv", ["joined", "decision.w", "decision.b"], ["decision.pre"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["decision.pre"], ["decision"]),
        helper.make_node("Conv", ["decision", "head.w", "head.b"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "marker", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    meta = ModelMetadata(spatial_dims=2, in_channels=1, class_names=("plain", "marked"), padding="same",
                         input_size_multiple=BLOCK, min_input_size=BLOCK,
                         normalization=Normalization("fixed", mean=0.0, std=1.0), blend="none")
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    layers = {"features": "features", "context": "context", "decision": "decision"}
    return add_explanation(model, layers=layers).SerializeToString()


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
