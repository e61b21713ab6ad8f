"""Seg-Grad-CAM from the ONNX explanation graph against PyTorch autograd, finite differences and tiling.

The exported models are tiny U-Nets (depth 2, 4 features) with non-trivial batch-norm statistics, so the
graph writer works on what export really writes: batch norm folded into the convolutions and the two-class
head folded into logit differences ending in a sigmoid.
"""
import json
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.explain_graph import add_explanation  # noqa: E402
from export.gradcam import seg_grad_cam, verify_explanation  # noqa: E402
from export.onnx_export import ParityError, build_metadata, export_onnx  # noqa: E402
from export.unet import UNet  # noqa: E402
from sdk import Segmenter  # noqa: E402
from sdk.errors import InvalidInputError, ModelError  # noqa: E402
from sdk.explain import (  # noqa: E402
    ACTIVATIONS_OUTPUT,
    CLASS_INPUT,
    GRADIENTS_OUTPUT,
    METADATA_KEY,
    REGION_INPUT,
    Explanation,
    explainer_of,
)
from sdk.io import read_image  # noqa: E402
from sdk.model_metadata import Normalization  # noqa: E402
from sdk.tiling import plan_tiles  # noqa: E402

RTOL = 1e-4  # relative to the largest magnitude of the reference


def _unet(spatial_dims=2, padding="same", seed=0):
    torch.manual_seed(seed)
    model = UNet(spatial_dims=spatial_dims, depth=2, base_features=4, padding=padding)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _export(tmp_path_factory, spatial_dims, padding, *, hook=False):
    """(module, model bytes): through ``export_onnx(explain=True)`` (``hook``) or by adding the graphs to the
    written file (what ``python -m export.explain_graph`` does)."""
    model = _unet(spatial_dims, padding)
    metadata = build_metadata(model, class_names=("background", "object"), normalization=Normalization("fixed"))
    path = tmp_path_factory.mktemp("explain") / "m.onnx"
    export_onnx(model, path, metadata=metadata, check_parity=False, explain=hook)
    return model, path.read_bytes() if hook else add_explanation(onnx.load(str(path))).SerializeToString()


@pytest.fixture(scope="module")
def unet2d(tmp_path_factory):
    return _export(tmp_path_factory, 2, "same", hook=True)


@pytest.fixture(scope="module")
def unet3d(tmp_path_factory):
    return _export(tmp_path_factory, 3, "same")


@pytest.fixture(scope="module")
def unet_valid(tmp_path_factory):
    return _export(tmp_path_factory, 2, "valid")


def _graph_run(model_bytes, layer, x, region, target_class, classes=2):
    explanation = Explanation.from_props({p.key: p.value for p in onnx.ModelProto.FromString(model_bytes).metadata_props})
    session = ort.InferenceSession(model_bytes + explanation.layers[layer].graph, providers=["CPUExecutionProvider"])
    return session.run([ACTIVATIONS_OUTPUT, GRADIENTS_OUTPUT], {
        "image": x, REGION_INPUT: region[:, None].astype(np.float32),
        CLASS_INPUT: np.eye(classes, dtype=np.float32)[target_class],
    })


def _predicted_class(logits):
    """The class predicted at the first sample's centre (an untrained net may predict one class only)."""
    return int(logits[(0, slice(None)) + tuple(n // 2 for n in logits.shape[2:])].argmax())


def _region(kind, logits, target_class, rng):
    if kind == "predicted":
        return (logits.argmax(1) == target_class).astype(np.float32)
    if kind == "random":
        return (rng.random(logits[:, 0].shape) < 0.3).astype(np.float32)
    box = np.zeros(logits[:, 0].shape, np.float32)
    box[(slice(None),) + tuple(slice(n // 4, n // 2) for n in box.shape[1:])] = 1.0
    return box


def _close(got, expected):
    scale = float(np.max(np.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * scale)


@pytest.mark.parametrize("fixture,size,layer,region_kind,target_class", [
    ("unet2d", (32, 48), "down.0", "predicted", None),
    ("unet2d", (32, 48), "bottleneck", "random", 0),
    ("unet2d", (32, 48), "bottleneck", "box", 1),
    ("unet2d", (32, 48), "up_blocks.0", "predicted", None),
    ("unet2d", (32, 48), "up_blocks.1", "box", 0),
    ("unet3d", (8, 16, 12), "down.1", "box", 1),
    ("unet3d", (8, 16, 12), "bottleneck", "predicted", None),
    ("unet3d", (8, 16, 12), "up_blocks.0", "random", 0),
    ("unet_valid", (60, 52), "down.0", "random", 1),
    ("unet_valid", (60, 52), "bottleneck", "predicted", None),
    ("unet_valid", (60, 52), "up_blocks.1", "box", 0),
])
def test_graph_equals_autograd(request, fixture, size, layer, region_kind, target_class):
    model, model_bytes = request.getfixturevalue(fixture)
    rng = np.random.default_rng(zlib.crc32(f"{fixture} {layer} {region_kind}".encode()))
    x = rng.standard_normal((2, 1) + size).astype(np.float32)  # a batch of two
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    target_class = _predicted_class(logits) if target_class is None else target_class
    region = _region(region_kind, logits, target_class, rng)
    reference = seg_grad_cam(model, torch.from_numpy(x), target_class=target_class, region=torch.from_numpy(region),
                             layer=layer)
    activations, gradients = _graph_run(model_bytes, layer, x, region, target_class)
    _close(activations, reference.activations.numpy())
    _close(gradients, reference.gradients.numpy())


@pytest.mark.parametrize("fixture,size,layer", [
    ("unet2d", (32, 48), "bottleneck"), ("unet2d", (40, 24), "down.1"), ("unet3d", (8, 16, 12), "bottleneck"),
])
@pytest.mark.parametrize("region_kind", ["predicted", "box"])
def test_segmenter_map_equals_reference(request, fixture, size, layer, region_kind):
    model, model_bytes = request.getfixturevalue(fixture)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(size).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None, None]).numpy()
    target_class = _predicted_class(logits)
    region = _region(region_kind, logits, target_class, rng)
    reference = seg_grad_cam(model, torch.from_numpy(x)[None, None], target_class=target_class,
                             region=torch.from_numpy(region), layer=layer)
    segmenter = Segmenter(model_bytes, device="cpu", tile=size)  # one tile: the whole image
    heat = segmenter.explain(x, target_class=target_class, layer=layer,
                             region=None if region_kind == "predicted" else region[0].astype(bool))
    assert heat.shape == size and heat.dtype == np.float32
    _close(heat, reference.heat[0].numpy())


def test_finite_differences_of_the_score(unet2d):
    """<gradient, v> against (S(A + eps v) - S(A - eps v)) / (2 eps), perturbing the layer's output in a float64
    copy of the network: checks the graph's gradient without autograd."""
    model, model_bytes = unet2d
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    region = (rng.random((1, 32, 32)) < 0.5).astype(np.float32)
    double = UNet(**model.config).double().eval()
    double.load_state_dict(model.state_dict())
    for layer in ("bottleneck", "up_blocks.0"):
        activations, gradients = _graph_run(model_bytes, layer, x, region, target_class=1)
        direction = rng.standard_normal(activations.shape)
        eps = 1e-4
        scores = []
        for sign in (1.0, -1.0):
            def shift(_module, _inputs, output, sign=sign):
                return output + sign * eps * torch.from_numpy(direction)

            handle = double.get_submodule(layer).register_forward_hook(shift)
            with torch.no_grad():
                logits = double(torch.from_numpy(x).double())
            handle.remove()
            scores.append(float(((logits[:, 1] - logits[:, 0]) * torch.from_numpy(region).double()).sum()))
        numeric = (scores[0] - scores[1]) / (2 * eps)
        analytic = float(np.sum(gradients.astype(np.float64) * direction))
        assert abs(numeric - analytic) <= 1e-3 * max(1.0, abs(numeric)), (layer, numeric, analytic)


def test_perturbing_the_input_changes_the_gradients(unet2d):
    """Gradients baked in as constants (pytorch #89675) would not move; ours move, and still match autograd."""
    model, model_bytes = unet2d
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    region = np.ones((1, 32, 32), np.float32)
    _, before = _graph_run(model_bytes, "bottleneck", x, region, 1)
    moved = (x + 0.5 * rng.standard_normal(x.shape)).astype(np.float32)
    _, after = _graph_run(model_bytes, "bottleneck", moved, region, 1)
    assert np.max(np.abs(after - before)) > 0.05 * np.max(np.abs(before))
    reference = seg_grad_cam(model, torch.from_numpy(moved), target_class=1, region=torch.from_numpy(region),
                             layer="bottleneck")
    _close(after, reference.gradients.numpy())


def test_tiles_pool_weights_over_the_whole_image(unet2d):
    """Small overlap-tiles (halo 16 px, the tiny U-Net's receptive field is ~±20 px with decaying weight) give
    the whole-image map: weights pooled over all tiles, maps per tile. Weights per tile would differ."""
    _, model_bytes = unet2d
    x = np.random.default_rng(6).standard_normal((96, 112)).astype(np.float32)
    region = np.zeros(x.shape, bool)
    region[20:50, 30:90] = True
    whole = Segmenter(model_bytes, device="cpu", tile=128).explain(x, region=region, layer="down.1")
    tiled_segmenter = Segmenter(model_bytes, device="cpu", tile=64, overlap=0.5)
    assert len(plan_tiles(x.shape, tiled_segmenter.metadata, tile=64, overlap=0.5, merge="none")) > 4
    tiled = tiled_segmenter.explain(x, region=region, layer="down.1")
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-3 * whole.max())
    assert np.corrcoef(tiled.ravel(), whole.ravel())[0, 1] > 0.9999


def test_model_without_explanation_graph_says_how_to_re_export(unet2d):
    proto = onnx.ModelProto.FromString(unet2d[1])
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    segmenter = Segmenter(proto.SerializeToString(), device="cpu")
    with pytest.raises(ModelError, match="--explain"):
        segmenter.explain(np.zeros((32, 32), np.float32), region=np.ones((32, 32), bool))


def test_bad_arguments_are_typed_errors(unet2d):
    _, model_bytes = unet2d
    segmenter = Segmenter(model_bytes, device="cpu")
    x = np.zeros((32, 32), np.float32)
    ones = np.ones((32, 32), bool)
    with pytest.raises(InvalidInputError, match="bottleneck"):  # names the layers there are
        segmenter.explain(x, region=ones, layer="decoder.9")
    with pytest.raises(InvalidInputError, match="background, object"):
        segmenter.explain(x, region=ones, target_class="cell")
    with pytest.raises(InvalidInputError, match="class"):
        segmenter.explain(x, region=ones, target_class=2)
    with pytest.raises(InvalidInputError, match="shape"):
        segmenter.explain(x, region=np.ones((16, 32), bool))
    with pytest.raises(InvalidInputError, match="empty"):
        segmenter.explain(x, region=np.zeros((32, 32), bool))
    assert list(explainer_of(segmenter).explanation.layers) == ["down.0", "down.1", "bottleneck", "up_blocks.0",
                                                                "up_blocks.1"]


def test_export_check_catches_a_wrong_graph(unet2d):
    """The check export runs (``verify_explanation``) passes on the real graphs and fails when a layer's
    graph computes another layer's gradients."""
    model, model_bytes = unet2d
    proto = onnx.ModelProto.FromString(model_bytes)
    assert verify_explanation(model, proto) <= RTOL
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    layers = json.loads(entry.value)["layers"]
    for key in ("graph", "sha256"):  # swapped whole, digests too: only the parity check can tell
        layers["up_blocks.0"][key], layers["up_blocks.1"][key] = layers["up_blocks.1"][key], layers["up_blocks.0"][key]
    entry.value = json.dumps({**json.loads(entry.value), "layers": layers})
    with pytest.raises(ParityError, match="up_blocks"):
        verify_explanation(model, proto)


@pytest.mark.parametrize("layer", ["down.0", "up_blocks.1"])
def test_valid_padding_map_lies_on_the_right_pixels(unet_valid, layer):
    """A valid U-Net sees the image mirror-padded by its margin; a stride-1 layer's map must be the reference
    map at exactly the output pixels (the layer grid is centred on the input: no interpolation, no shift)."""
    model, model_bytes = unet_valid
    segmenter = Segmenter(model_bytes, device="cpu")
    meta = segmenter.metadata
    side = meta.valid_input_size_at_least(64)
    n = side - 2 * meta.output_margin
    image = np.random.default_rng(8).standard_normal((n, n)).astype(np.float32)
    region = np.zeros((n, n), bool)
    region[n // 4: n // 2, n // 3: n // 2] = True
    padded = np.pad(image, meta.output_margin, mode="reflect")[None, None]
    for target_class in (1, 0):  # a random network's map may be all zero for one of the classes
        reference = seg_grad_cam(model, torch.from_numpy(padded), target_class=target_class,
                                 region=torch.from_numpy(region[None].astype(np.float32)), layer=layer)
        cam = torch.relu((reference.weights[0, :, None, None] * reference.activations[0]).sum(0)).numpy()
        crop = (cam.shape[0] - n) // 2
        expected = cam[crop: crop + n, crop: crop + n]
        if expected.max() > 0:
            break
    assert expected.max() > 0
    heat = segmenter.explain(image, region=region, layer=layer, target_class=target_class)
    _close(heat / heat.max(), expected / expected.max())  # the weights' normalisation differs: positions


def test_cli_explains_a_volume(unet3d, tmp_path, capsys):
    """3D: the map has the volume's shape, the overlay shows the slice holding most of the map."""
    tifffile = pytest.importorskip("tifffile")
    from sdk.cli.main import main

    _, model_bytes = unet3d
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    volume = np.random.default_rng(9).standard_normal((8, 16, 20)).astype(np.float32)
    tifffile.imwrite(tmp_path / "volume.tif", volume)
    region = np.zeros(volume.shape, np.uint8)
    region[2:6, 4:12, 4:12] = 1
    tifffile.imwrite(tmp_path / "region.tif", region)
    args = ["explain", str(tmp_path / "volume.tif"), "-m", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "map.npy"),
            "--region", str(tmp_path / "region.tif"), "--layer", "down.1"]
    assert main(args) == 0
    heat = np.load(tmp_path / "map.npy")
    assert heat.shape == volume.shape
    z = int(np.argmax(heat.reshape(8, -1).sum(axis=1)))
    assert f"(slice {z})" in capsys.readouterr().out
    assert read_image(tmp_path / "map_overlay.png").shape == (16, 20, 3)


@pytest.mark.parametrize("name", ["isbi2012", "isbi2012-int8"])
def test_a_flipped_bit_in_a_shipped_explanation_graph_is_refused(name):
    import base64

    from sdk.model_file import read_model_file
    from sdk.models import embedded_model_path

    path = embedded_model_path(name)
    props = read_model_file(path.read_bytes(), str(path)).props
    entry = json.loads(props[METADATA_KEY])
    assert Explanation.from_props(props).layers.keys() == entry["layers"].keys()  # intact: every digest holds
    assert all("sha256" in layer for layer in entry["layers"].values())
    rng = np.random.default_rng(7)
    for layer_name, layer in entry["layers"].items():
        graph = bytearray(base64.b64decode(layer["graph"]))
        graph[int(rng.integers(len(graph)))] ^= 1 << int(rng.integers(8))
        corrupt = json.loads(props[METADATA_KEY])
        corrupt["layers"][layer_name]["graph"] = base64.b64encode(bytes(graph)).decode("ascii")
        with pytest.raises(ModelError, match="does not match its digest"):
            Explanation.from_props({**props, METADATA_KEY: json.dumps(corrupt)})
    # entries written before digests existed still load
    for layer in entry["layers"].values():
        del layer["sha256"]
    assert Explanation.from_props({**props, METADATA_KEY: json.dumps(entry)}).default_layer == entry["default_layer"]
