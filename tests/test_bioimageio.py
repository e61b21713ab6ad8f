"""BioImage Model Zoo packages: export passes ``bioimageio test`` (bioimageio.core), import predicts like
the original model, and a package made by bioimageio.spec's own builders predicts like bioimageio.core."""
from __future__ import annotations

import hashlib
import sys
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
import bioimageio.core as zoo_core
from bioimageio.core.sample import Sample
from bioimageio.core.tensor import Tensor
from bioimageio.spec import save_bioimageio_package
from bioimageio.spec.model import v0_5 as zoo

from export.bioimageio import REPRODUCIBILITY_TOLERANCE, export_package
from sdk import Segmenter
from sdk.bioimageio import load_package
from sdk.bioimageio_processing import ZooPreprocessing, ZooStep, preprocessing_for
from sdk.errors import InvalidInputError, ModelError, OutputExistsError
from sdk.io import read_image
from sdk.model_metadata import Normalization
from sdk.models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS, embedded_model_path, sample_image_path
from onnx_fixtures import make_model

ATOL = REPRODUCIBILITY_TOLERANCE["absolute_tolerance"]


def _passed(package: Path) -> list[str]:
    """Run bioimageio.core's test of ``package``; return the names of its checks (all must pass)."""
    summary = zoo_core.test_description(package)
    failed = [(d.name, [e.msg[:300] for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    return [d.name for d in summary.details]


@pytest.fixture(scope="module")
def embedded_package(tmp_path_factory):
    """The package of an embedded model, by name (built once per module)."""
    built: dict[str, Path] = {}

    def package(name: str) -> Path:
        if name not in built:
            built[name] = export_package(name, tmp_path_factory.mktemp("zoo") / f"{name}.zip")
        return built[name]

    return package


@pytest.fixture(scope="module")
def default_package(embedded_package) -> Path:
    return embedded_package(DEFAULT_MODEL_NAME)


# -- export -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
def test_embedded_model_packages_pass_bioimageio_test(embedded_package, name):
    package = embedded_package(name)
    checks = _passed(package)
    assert "Reproduce test outputs from test inputs (onnx)" in checks
    # the dynamic-shape runs: sizes min + n * step (n = 0, 1, 2) at batch sizes 1 and 2
    runs = [c for c in checks if c.startswith("Run onnx inference for inputs with batch_size")]
    assert len(runs) == 6
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        weights = archive.read("weights.onnx")
    assert weights == embedded_model_path(name).read_bytes()  # the model file itself
    assert rdf["weights"]["onnx"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert rdf["weights"]["onnx"]["opset_version"] == onnx.load_from_string(weights).opset_import[0].version
    space = rdf["outputs"][0]["axes"][2]
    # overlap-tile with a 1024-px tile and 0.1875 overlap: 192 shared pixels, 96 per side
    assert space["halo"] == 96 and space["size"]["offset"] == 0
    assert rdf["inputs"][0]["axes"][2]["size"]["step"] == 16
    assert rdf["inputs"][0]["axes"][2]["unit"] == "nanometer"
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["membrane", "cell"]
    assert {c.get("doi") for c in rdf["cite"]} >= {"10.1007/978-3-319-24574-4_28", "10.3389/fnana.2015.00142"}
    assert rdf["config"]["bioimageio"]["reproducibility_tolerance"][0]["absolute_tolerance"] == ATOL


def test_package_imported_back_predicts_bit_identically(default_package, tmp_path):
    image = read_image(sample_image_path())[:256, :384]  # two overlap-tiles of 256 px
    expected = Segmenter(tile=256).predict_proba(image)
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(default_package) as package:
        package.extractall(folder)
    for source in (default_package, folder, folder / "rdf.yaml"):
        np.testing.assert_array_equal(Segmenter(str(source), tile=256).predict_proba(image), expected)


def test_test_tensors_agree_with_numpy_zscore(default_package):
    """The package's test output is the model applied to the z-scored test input (numpy reference)."""
    with zipfile.ZipFile(default_package) as package:
        x = np.load(package.open("test_input.npy"))
        y = np.load(package.open("test_output.npy"))
    z = (x - x.mean()) / max(x.std(), 1e-6)
    import onnxruntime as ort

    session = ort.InferenceSession(str(embedded_model_path(DEFAULT_MODEL_NAME)), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image": z.astype(np.float32)})[0]
    np.testing.assert_allclose(y, reference, atol=1e-5)


@pytest.mark.parametrize(
    "kind, dims, normalization",
    [
        ("valid", 2, Normalization("percentile", low=2.0, high=98.0, clip_low=-1.0, clip_high=2.0)),
        ("same", 3, Normalization("fixed", mean=0.3, std=0.2)),
    ],
)
def test_any_model_package_passes_and_round_trips(tmp_path, kind, dims, normalization):
    data, _ = make_model(kind, spatial_dims=dims, in_channels=2, num_classes=3, normalization=normalization)
    model = tmp_path / "model.onnx"
    model.write_bytes(data)
    package = export_package(model, tmp_path / "model.zip", test_side=24)
    _passed(package)
    image = np.random.default_rng(1).random((2,) + (30,) * dims).astype(np.float32)
    expected = Segmenter(str(model), tile=16).predict_proba(image)
    np.testing.assert_array_equal(Segmenter(str(package), tile=16).predict_proba(image), expected)
    with pytest.raises(OutputExistsError):
        export_package(model, package)
    with pytest.raises(InvalidInputError, match="license"):
        export_package(model, tmp_path / "other.zip", license="no such license", test_side=24)
    with pytest.raises(ModelError, match="not an .onnx model"):
        export_package(package, tmp_path / "again.zip")


def test_cli_writes_a_package_and_reads_it(tmp_path, capsys):
    from export.cli import main as export_main
    from sdk.cli.main import main as sdk_main

    data, _ = make_model("pointwise", in_channels=1, num_classes=2)
    model, package = tmp_path / "model.onnx", tmp_path / "model.zip"
    model.write_bytes(data)
    assert export_main(["bioimageio", str(model), "-o", str(package), "--pixel-size", "0.5,0.5", "--unit", "micrometer"]) == 0
    assert export_main(["bioimageio", str(model), "-o", str(package)]) == 2  # exists, no --force
    with zipfile.ZipFile(package) as archive:
        axis = yaml.safe_load(archive.read("rdf.yaml"))["inputs"][0]["axes"][3]
    assert (axis["unit"], axis["scale"]) == ("micrometer", 0.5)
    capsys.readouterr()
    assert sdk_main(["info", str(package), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(package) and report["metadata"]["class_names"] == ["class0", "class1"]
    assert report["bioimageio"]["metadata_from"] == "the ONNX file's unet-sdk metadata"
    assert report["bioimageio"]["weights_sha256_verified"] is True


def test_normalization_without_zoo_equivalent_is_refused():
    with pytest.raises(ModelError, match="eps"):
        preprocessing_for(Normalization("per_image_zscore", eps=0.5), ["y", "x"])
    with pytest.raises(ModelError, match="max_percentile"):
        preprocessing_for(Normalization("percentile", low=0.0, high=0.5), ["y", "x"])


# -- zoo preprocessing ------------------------------------------------------------------------------
def test_zoo_preprocessing_chain_uses_statistics_of_the_previous_step():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 3.0, (2, 20, 30))
    steps = (
        ZooStep("scale_linear", {"gain": [2.0, 0.5], "offset": [1.0, -1.0], "axis": "channel"}),
        ZooStep("zero_mean_unit_variance", {"eps": 1e-3}, reduce=(1, 2)),
        ZooStep("clip", {"min": -1.5, "max": 1.5}),
    )
    prep = ZooPreprocessing(steps=steps)
    linear = image * np.array([2.0, 0.5])[:, None, None] + np.array([1.0, -1.0])[:, None, None]
    mean, std = linear.mean(axis=(1, 2), keepdims=True), linear.std(axis=(1, 2), keepdims=True)
    expected = np.clip((linear - mean) / (std + 1e-3), -1.5, 1.5)
    whole = prep.apply(image)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    # a tile normalised with the whole image's statistics equals that part of the whole result
    tile = prep.apply(image[:, 5:15, 10:25], prep.statistics(image))
    np.testing.assert_array_equal(tile, whole[:, 5:15, 10:25])


# -- a package written by bioimageio.spec's builders ------------------------------------------------
def _foreign_package(tmp_path: Path, kind: str) -> Path:
    """A zoo package for a tiny network, built with bioimageio.spec (no unet-sdk metadata in the ONNX): per
    channel fixed_zero_mean_unit_variance (valid) or scale_range with a halo (same), the network's softmax
    moved into the rdf's postprocessing."""
    data, _ = make_model(kind, in_channels=2, num_classes=3)
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    softmax = proto.graph.node[-1]
    proto.graph.node.remove(softmax)
    proto.graph.output[0].name = softmax.input[0]
    folder = tmp_path / kind
    folder.mkdir()
    (folder / "net.onnx").write_bytes(proto.SerializeToString())
    margin = 3 if kind == "valid" else 0
    halo = 0 if kind == "valid" else 8
    x = np.random.default_rng(2).normal(100, 20, (1, 2, 40, 40)).astype(np.float32)
    if kind == "valid":  # constants: statistics of a padded image would differ from the image's
        preprocessing = [zoo.FixedZeroMeanUnitVarianceDescr(kwargs=zoo.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            axis=zoo.AxisId("channel"), mean=[100.0, 90.0], std=[20.0, 25.0],
        ))]
        normalised = (x - np.array([100.0, 90.0])[:, None, None]) / (np.array([20.0, 25.0])[:, None, None] + 1e-6)
    else:
        preprocessing = [zoo.ScaleRangeDescr(kwargs=zoo.ScaleRangeKwargs(
            axes=[zoo.AxisId("y"), zoo.AxisId("x")], min_percentile=1, max_percentile=99.5,
        ))]
        lo, hi = np.percentile(x, [1, 99.5], axis=(2, 3), keepdims=True)
        normalised = (x - lo) / (hi - lo + 1e-6)
    import onnxruntime as ort

    logits = ort.InferenceSession(str(folder / "net.onnx")).run(None, {"image": normalised.astype(np.float32)})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.save(folder / "in.npy", x)
    np.save(folder / "out.npy", (e / e.sum(axis=1, keepdims=True)).astype(np.float32))
    space_out = []
    for a in ("y", "x"):
        size = zoo.SizeReference(tensor_id=zoo.TensorId("image"), axis_id=zoo.AxisId(a), offset=-2 * margin)
        space_out.append(
            zoo.SpaceOutputAxisWithHalo(id=zoo.AxisId(a), size=size, halo=halo) if halo
            else zoo.SpaceOutputAxis(id=zoo.AxisId(a), size=size)
        )
    descr = zoo.ModelDescr(
        name=f"tiny {kind} net",
        description="a test network",
        authors=[zoo.Author(name="test")],
        cite=[zoo.CiteEntry(text="test", doi=zoo.Doi("10.1007/978-3-319-24574-4_28"))],
        license=zoo.LicenseId("MIT"),
        inputs=[zoo.InputTensorDescr(
            id=zoo.TensorId("image"),
            axes=[
                zoo.BatchAxis(), zoo.ChannelAxis(channel_names=["a", "b"]),
                zoo.SpaceInputAxis(id=zoo.AxisId("y"), size=zoo.ParameterizedSize(min=24, step=2)),
                zoo.SpaceInputAxis(id=zoo.AxisId("x"), size=zoo.ParameterizedSize(min=24, step=2)),
            ],
            test_tensor=zoo.FileDescr(source=folder / "in.npy"),
            preprocessing=preprocessing,
        )],
        outputs=[zoo.OutputTensorDescr(
            id=zoo.TensorId("probabilities"),
            axes=[zoo.BatchAxis(), zoo.ChannelAxis(channel_names=["p", "q", "r"])] + space_out,
            test_tensor=zoo.FileDescr(source=folder / "out.npy"),
            postprocessing=[zoo.SoftmaxDescr(kwargs=zoo.SoftmaxKwargs(axis=zoo.AxisId("channel")))],
        )],
        weights=zoo.WeightsDescr(onnx=zoo.OnnxWeightsDescr(source=folder / "net.onnx", opset_version=17)),
    )
    return save_bioimageio_package(descr, output_path=tmp_path / f"{kind}.zip")


@pytest.mark.parametrize("kind", ["valid", "same"])
def test_foreign_package_predicts_like_bioimageio_core(tmp_path, kind):
    package = _foreign_package(tmp_path, kind)
    segmenter = Segmenter(str(package), tile=32)
    meta = segmenter.metadata
    assert load_package(package).summary()["metadata_from"] == "the rdf"
    assert (meta.padding, meta.blend, meta.output_activation) == (
        ("valid", "none", "softmax") if kind == "valid" else ("same", "none", "softmax")
    )
    image = np.random.default_rng(3).normal(100, 20, (2, 70, 58)).astype(np.float32)
    ours = segmenter.predict_proba(image)  # several tiles of 32 px
    # bioimageio.core runs the whole image at once, as its own test does (without padding the input by
    # the halo: its predict() would normalise that padded image instead); ours mirror-pads a valid
    # network's margin (so the output has the image's size): give it the same padded input
    margin = meta.output_margin
    padded = np.pad(image, ((0, 0),) + ((margin, margin),) * 2, mode="reflect")
    sample = Sample(members={"image": Tensor.from_numpy(padded[None], dims=("batch", "channel", "y", "x"))}, stat={}, id=0)
    with zoo_core.create_prediction_pipeline(zoo_core.load_model_description(package)) as pipeline:
        result = pipeline.predict_sample_without_blocking(sample, skip_input_padding=True, skip_output_cropping=True)
    theirs = result.members["probabilities"].data.to_numpy()[0]
    assert theirs.shape == ours.shape
    mismatched = np.abs(ours - theirs) > ATOL
    assert not mismatched.any(), f"{mismatched.sum()} of {mismatched.size} differ, max {np.abs(ours - theirs).max()}"


# -- malformed packages -----------------------------------------------------------------------------
def _edited(default_package: Path, tmp_path: Path, edit) -> Path:
    folder = tmp_path / "edited"
    with zipfile.ZipFile(default_package) as package:
        package.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    edit(rdf, folder)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rdf, folder: rdf.pop("weights"), "lists no weights"),
        (lambda rdf, folder: (folder / "weights.onnx").unlink(), "missing from the package"),
        (lambda rdf, folder: rdf["weights"]["onnx"].update(sha256="0" * 64), "sha256"),
        (lambda rdf, folder: rdf["inputs"][0]["axes"][2].update(type="wavelength"), "axis type 'wavelength' is unknown"),
        (lambda rdf, folder: rdf["inputs"][0]["axes"][2].update(size=256), "fixed size 256"),
        (lambda rdf, folder: rdf["inputs"][0]["axes"].insert(2, rdf["inputs"][0]["axes"].pop(1)), "in this order"),
        (lambda rdf, folder: rdf["inputs"][0]["preprocessing"].append({"id": "scale_mean_variance", "kwargs": {}}),
         "preprocessing 'scale_mean_variance' is unsupported"),
        (lambda rdf, folder: rdf["outputs"][0].update(postprocessing=[{"id": "binarize", "kwargs": {"threshold": 0.5}}]),
         "postprocessing 'binarize'"),
        (lambda rdf, folder: rdf["weights"]["onnx"].update(source="https://example.org/w.onnx"), "URL"),
        (lambda rdf, folder: rdf["weights"]["onnx"].update(source="../w.onnx"), "outside the package"),
        (lambda rdf, folder: rdf.update(format_version="0.3.6"), "format_version 0.3.6 is not supported"),
        (lambda rdf, folder: (folder / "weights.onnx").unlink() or (folder / "weights.onnx").symlink_to("/etc/hostname"),
         "links outside the package"),
        (lambda rdf, folder: rdf["inputs"][0]["preprocessing"][1].update(kwargs=[1, 2]), "kwargs are not a mapping"),
        (lambda rdf, folder: rdf["inputs"][0]["preprocessing"][1]["kwargs"].update(eps="tiny"), "not a finite number"),
    ],
)
def test_malformed_packages_are_model_errors(default_package, tmp_path, edit, message):
    folder = _edited(default_package, tmp_path, edit)
    with pytest.raises(ModelError, match=message):
        load_package(folder)


def _torch_package(tmp_path: Path, net, x: np.ndarray, weights) -> tuple[Path, np.ndarray]:
    """A spec-built package of a torch network ``net`` (2 -> 3 channels, same size, sigmoid postprocessing)
    with ``weights`` (a WeightsDescr); returns it and the network's logits for ``x``."""
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "in.npy", x)
    np.save(tmp_path / "out.npy", 1 / (1 + np.exp(-logits)))
    space_in = [zoo.SpaceInputAxis(id=zoo.AxisId(a), size=zoo.ParameterizedSize(min=8, step=1)) for a in "yx"]
    space_out = [zoo.SpaceOutputAxis(id=zoo.AxisId(a), size=zoo.SizeReference(
        tensor_id=zoo.TensorId("raw"), axis_id=zoo.AxisId(a))) for a in "yx"]
    descr = zoo.ModelDescr(
        name="tiny torch net", description="a test network", authors=[zoo.Author(name="test")],
        cite=[zoo.CiteEntry(text="test", doi=zoo.Doi("10.1007/978-3-319-24574-4_28"))], license=zoo.LicenseId("MIT"),
        inputs=[zoo.InputTensorDescr(
            id=zoo.TensorId("raw"), axes=[zoo.BatchAxis(), zoo.ChannelAxis(channel_names=["a", "b"])] + space_in,
            test_tensor=zoo.FileDescr(source=tmp_path / "in.npy"),
        )],
        outputs=[zoo.OutputTensorDescr(
            id=zoo.TensorId("out"), axes=[zoo.BatchAxis(), zoo.ChannelAxis(channel_names=["p", "q", "r"])] + space_out,
            test_tensor=zoo.FileDescr(source=tmp_path / "out.npy"), postprocessing=[zoo.SigmoidDescr()],
        )],
        weights=weights,
    )
    return save_bioimageio_package(descr, output_path=tmp_path / "package.zip"), logits


def test_torchscript_package_is_converted_once_and_cached(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    torch.manual_seed(0)
    net = torch.jit.script(Net().eval())
    net.save(str(tmp_path / "net.pt"))
    x = np.random.default_rng(4).random((1, 2, 40, 24)).astype(np.float32)
    weights = zoo.WeightsDescr(torchscript=zoo.TorchscriptWeightsDescr(
        source=tmp_path / "net.pt", pytorch_version=zoo.Version(torch.__version__.split("+")[0]),
    ))
    package, logits = _torch_package(tmp_path, net, x, weights)
    monkeypatch.setenv("UNET_SDK_CACHE", str(tmp_path / "cache"))
    proba = Segmenter(str(package)).predict_proba(x[0])
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-logits[0])), atol=1e-5)
    assert len(list((tmp_path / "cache" / "bioimageio").glob("*.onnx"))) == 1

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(torch.onnx, "export", no_conversion)
    np.testing.assert_array_equal(Segmenter(str(package)).predict_proba(x[0]), proba)


ARCHITECTURE = '''
import torch


class Net(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''


def test_state_dict_package_runs_package_code_only_when_trusted(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    namespace: dict = {}
    exec(ARCHITECTURE, namespace)
    torch.manual_seed(1)
    net = namespace["Net"](classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "arch.py").write_text(ARCHITECTURE)
    x = np.random.default_rng(5).random((1, 2, 20, 28)).astype(np.float32)
    weights = zoo.WeightsDescr(pytorch_state_dict=zoo.PytorchStateDictWeightsDescr(
        source=tmp_path / "weights.pt", pytorch_version=zoo.Version(torch.__version__.split("+")[0]),
        architecture=zoo.ArchitectureFromFileDescr(source=tmp_path / "arch.py", callable="Net", kwargs={"classes": 3}),
    ))
    package, logits = _torch_package(tmp_path, net, x, weights)
    monkeypatch.setenv("UNET_SDK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNET_SDK_TRUST_PACKAGE_CODE", raising=False)
    with pytest.raises(ModelError, match="UNET_SDK_TRUST_PACKAGE_CODE=1"):
        Segmenter(str(package))
    monkeypatch.setenv("UNET_SDK_TRUST_PACKAGE_CODE", "1")
    proba = Segmenter(str(package)).predict_proba(x[0])
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-logits[0])), atol=1e-5)


def test_format_0_4_package_is_converted_by_bioimageio_spec(tmp_path, monkeypatch):
    """A hand-written format 0.4 rdf (axes "bcyx", shape min/step, halo list, per_sample z-score) runs
    after bioimageio.spec's conversion; without bioimageio.spec it is a ModelError saying so."""
    import onnxruntime as ort

    data, _ = make_model("same", in_channels=1, num_classes=2)
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    (tmp_path / "net.onnx").write_bytes(proto.SerializeToString())
    x = np.random.default_rng(6).random((1, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    session = ort.InferenceSession(str(tmp_path / "net.onnx"))
    np.save(tmp_path / "out.npy", session.run(None, {"image": (x - x.mean()) / (x.std() + 1e-6)})[0])
    (tmp_path / "README.md").write_text("# old model\n")
    rdf = {
        "format_version": "0.4.10", "type": "model", "name": "old model", "description": "a 0.4 model",
        "authors": [{"name": "test"}], "cite": [{"text": "u", "doi": "10.1007/978-3-319-24574-4_28"}],
        "license": "MIT", "documentation": "README.md", "tags": ["test"], "timestamp": "2020-01-01T00:00:00",
        "test_inputs": ["in.npy"], "test_outputs": ["out.npy"],
        "inputs": [{
            "name": "image", "axes": "bcyx", "data_type": "float32", "data_range": [0, 1],
            "shape": {"min": [1, 1, 16, 16], "step": [0, 0, 2, 2]},
            "preprocessing": [{"name": "zero_mean_unit_variance", "kwargs": {"mode": "per_sample", "axes": "yx"}}],
        }],
        "outputs": [{
            "name": "probabilities", "axes": "bcyx", "data_type": "float32", "halo": [0, 0, 4, 4],
            "shape": {"reference_tensor": "image", "scale": [1, 2, 1, 1], "offset": [0, 0, 0, 0]},
        }],
        "weights": {"onnx": {
            "source": "net.onnx", "opset_version": 17,
            "sha256": hashlib.sha256((tmp_path / "net.onnx").read_bytes()).hexdigest(),
        }},
    }
    (tmp_path / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    image = np.random.default_rng(7).random((40, 36)).astype(np.float32)
    segmenter = Segmenter(str(tmp_path))
    assert (segmenter.metadata.blend, segmenter.metadata.min_input_size) == ("none", 16)
    z = (image - image.mean()) / (image.std() + 1e-6)
    expected = session.run(None, {"image": z[None, None].astype(np.float32)})[0][0]
    np.testing.assert_allclose(segmenter.predict_proba(image), expected, atol=1e-5)
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # as if not installed
    with pytest.raises(ModelError, match="needs bioimageio.spec"):
        load_package(tmp_path)
