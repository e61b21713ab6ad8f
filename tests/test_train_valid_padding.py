"""Training a valid-padding U-Net: mirrored context for border tiles, labels cut to the output, whole-sample
validation with mirrored context (checked against numpy's reflect padding)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.data import TileSampler, make_samples, mirrored_window  # noqa: E402
from export.train import TrainConfig, _whole_sample_logits, train  # noqa: E402
from test_train import _config, _synthetic  # noqa: E402


@pytest.mark.parametrize("starts, sizes", [((-3, -5), (10, 12)), ((2, 1), (4, 4)), ((-4, 30), (48, 9))])
def test_mirrored_window_is_numpy_reflect_padding(starts, sizes):
    array = np.random.default_rng(0).random((2, 9, 36))
    pad = 40
    padded = np.pad(array, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    box = tuple(slice(s + pad, s + pad + n) for s, n in zip(starts, sizes))
    np.testing.assert_array_equal(mirrored_window(array, starts, sizes), padded[(slice(None),) + box])


def test_sampler_with_margin_gives_mirrored_context_and_central_labels():
    images, labels = _synthetic(n=1, size=24)
    sample = make_samples(images, labels, spatial_dims=2)[0]
    margin, tile = 5, (18, 18)
    sampler = TileSampler([sample], tile, None, margin=margin)
    padded = np.pad(sample.image, ((0, 0), (margin, margin), (margin, margin)), mode="reflect")
    rng = np.random.default_rng(3)
    corners = set()
    for _ in range(60):
        image, classes, weights = sampler.draw(rng)
        assert image.shape == (1, 18, 18) and classes.shape == weights.shape == (8, 8)
        # the labels are a real window of the sample; the image is its context, mirrored at the border
        hits = [(y, x) for y in range(24 - 7) for x in range(24 - 7)
                if np.array_equal(sample.classes[y:y + 8, x:x + 8], classes)
                and np.array_equal(padded[:, y:y + 18, x:x + 18], image)]
        assert hits
        corners.update(hits)
    assert (0, 0) in corners or any(y == 0 or x == 0 for y, x in corners)  # border windows are drawn


def test_valid_padding_trains_and_validates_on_whole_samples(tmp_path):
    images, labels = _synthetic(n=3, size=40)
    samples = make_samples(images, labels, spatial_dims=2)
    config = _config(padding="valid", tile=(30, 30), steps=4, epoch_steps=2)
    best = train(config, samples[:2], samples[2:], tmp_path)
    assert best["step"] in (2, 4) and np.isfinite(best["best"]["rand_error"])
    model = TrainConfig.from_dict(best["config"]).model()
    model.load_state_dict(best["model"])
    model.eval()
    rules = model.size_rules()
    margin = rules.output_margin
    side = next(n for n in range(40 + 2 * margin, 40 + 2 * margin + 64) if rules.accepts(n))
    image = samples[2].image
    reference_input = np.pad(image, ((0, 0), (margin, side - 40 - margin), (margin, side - 40 - margin)),
                             mode="reflect")
    with torch.no_grad():
        expected = model(torch.from_numpy(reference_input[None]))[:, :, :40, :40]
        got = _whole_sample_logits(model, image)
    assert got.shape == (1, 2, 40, 40)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_cli_trains_valid_padding_and_reports_steps_without_none(tmp_path, capsys):
    import tifffile

    from export.cli import main

    images, labels = _synthetic(n=3, size=40)
    tifffile.imwrite(tmp_path / "images.tif", images.astype(np.float32))
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    rc = main(["train", "--images", str(tmp_path / "images.tif"), "--labels", str(tmp_path / "labels.tif"),
               "--out", str(tmp_path / "run"), "--steps", "2", "--epoch-steps", "2", "--depth", "2",
               "--base-features", "2", "--tile", "30", "--batch-size", "1", "--padding", "valid",
               "--threads", "1", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "run" / "best.pt").is_file()
    assert "2 steps on cpu ->" in err and "None" not in err
