"""A tiny U-Net trains on synthetic data: loss falls, checkpoints load with weights_only, resume works."""
import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from export.data import isbi2012_preset, make_samples, parse_index_range  # noqa: E402
from export.train import TrainConfig, load_checkpoint, model_from_checkpoint, train  # noqa: E402
from sdk.errors import InvalidInputError  # noqa: E402


def _synthetic(n=3, size=48, seed=0):
    """Bright cells separated by dark membranes (like EM), labels 0 = membrane, 255 = cell."""
    rng = np.random.default_rng(seed)
    labels, images = [], []
    for _ in range(n):
        smooth = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3)
        cell = smooth > np.percentile(smooth, 40)
        labels.append(np.where(cell, 255, 0).astype(np.uint8))
        images.append((cell * 100 + 50 + rng.normal(0, 20, cell.shape)).astype(np.float32))
    return np.stack(images), np.stack(labels)


def _config(**kw):
    base = dict(depth=2, base_features=4, tile=(32, 32), batch_size=4, steps=40, epoch_steps=20, lr=5e-3,
                threads=1, class_names=("membrane", "cell"))
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_checkpoint_round_trip(tmp_path):
    images, labels = _synthetic()
    samples = make_samples(images, labels, spatial_dims=2)
    losses = []
    best = train(_config(), samples, [], tmp_path, on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:4])
    assert best["step"] == 40 and len(best["history"]) == 2
    # weights_only=True loading (the checkpoint holds tensors and plain values only)
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["step"] == 40
    model, _ = model_from_checkpoint(tmp_path / "best.pt")
    with torch.no_grad():
        prob = torch.softmax(model(torch.from_numpy(samples[0].image[None])), 1)[0, 1].numpy()
    truth = labels[0] > 0
    assert np.mean((prob > 0.5) == truth) > 0.8


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    images, labels = _synthetic(seed=1)
    samples = make_samples(images, labels, spatial_dims=2)
    cfg = _config(steps=20, epoch_steps=10)
    train(cfg, samples, [], tmp_path / "a")

    class Crash(Exception):
        pass

    def crash_at_13(step, loss):
        if step == 13:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, samples, [], tmp_path / "b", on_step=crash_at_13)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 10
    train(cfg, samples, [], tmp_path / "b", resume=True)
    straight, resumed = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert resumed["step"] == straight["step"] == 20
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_validation_uses_isbi_metrics(tmp_path):
    images, labels = _synthetic(n=3, size=32, seed=2)
    samples = make_samples(images, labels, spatial_dims=2)
    best = train(_config(steps=10, epoch_steps=10), samples[:2], samples[2:], tmp_path)
    record = best["best"]
    for key in ("warping_error", "rand_error", "pixel_error", "val_loss"):
        assert key in record
    for key in ("warping_error", "rand_error", "pixel_error"):
        assert 0.0 <= record[key] <= 1.0


def test_keep_epochs_and_the_training_record_of_an_epoch_checkpoint(tmp_path):
    from export.cli import training_record

    images, labels = _synthetic(n=3, size=32, seed=3)
    samples = make_samples(images, labels, spatial_dims=2)
    train(_config(steps=30, epoch_steps=10), samples[:2], samples[2:], tmp_path, keep_epochs=True)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_000010.pt", "epoch_000020.pt", "epoch_000030.pt"]
    last = load_checkpoint(tmp_path / "last.pt")
    for entry in last["history"]:  # each epoch file holds that epoch's weights and its own scores in the record
        epoch = load_checkpoint(tmp_path / f"epoch_{entry['step']:06d}.pt")
        assert epoch["step"] == entry["step"]
        record = training_record(epoch)
        assert record["held_out_metrics"]["rand_error"] == entry["rand_error"]
        is_best = entry["step"] == last["best"]["step"]
        assert record["selected_by"].startswith("lowest") == is_best
    for name, tensor in load_checkpoint(tmp_path / "epoch_000030.pt")["model"].items():
        torch.testing.assert_close(last["model"][name], tensor, msg=name)


def test_averaged_checkpoints_mean_the_weights_and_remeasure_batch_norm(tmp_path):
    from export.average import average_checkpoints
    from export.cli import training_record

    images, labels = _synthetic(n=3, size=32, seed=4)
    samples = make_samples(images, labels, spatial_dims=2)
    train(_config(steps=30, epoch_steps=10), samples[:2], samples[2:], tmp_path, keep_epochs=True)
    paths = [tmp_path / "epoch_000020.pt", tmp_path / "epoch_000030.pt"]
    out = average_checkpoints(paths, tmp_path / "swa.pt", samples[:2], samples[2:], bn_batches=3)
    a, b = (load_checkpoint(p)["model"] for p in paths)
    averaged = load_checkpoint(tmp_path / "swa.pt")
    for name, tensor in averaged["model"].items():
        if "running" in name or "num_batches" in name:
            continue
        np.testing.assert_allclose(tensor.numpy(), (a[name].double().numpy() + b[name].double().numpy()) / 2,
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    norms = [k for k in averaged["model"] if k.endswith("running_mean")]
    assert norms and all(int(averaged["model"][k.replace("running_mean", "num_batches_tracked")]) == 3 for k in norms)
    assert out["best"]["averaged_steps"] == [20, 30] and 0 <= out["best"]["rand_error"] <= 1
    record = training_record(averaged)
    assert "average of the weights of steps 20, 30" in record["selected_by"]
    assert record["held_out_metrics"]["rand_error"] == out["best"]["rand_error"]
    with pytest.raises(Exception, match="exists"):
        average_checkpoints(paths, tmp_path / "swa.pt", samples[:2], samples[2:])
    with pytest.raises(InvalidInputError, match="at least two"):
        average_checkpoints(paths[:1], tmp_path / "one.pt", samples[:2], samples[2:])


def test_label_and_split_handling(tmp_path):
    images, labels = _synthetic(n=2, size=16)
    samples = make_samples(images, labels, spatial_dims=2)
    assert set(np.unique(samples[0].classes)) == {0, 1}
    np.testing.assert_array_equal(samples[0].classes, labels[0] == 255)
    assert abs(float(samples[0].image.mean())) < 1e-4 and abs(float(samples[0].image.std()) - 1) < 1e-3
    assert parse_index_range("25:30", 30) == [25, 26, 27, 28, 29]
    assert parse_index_range("0-2", 30) == [0, 1, 2]
    for bad in ("31", "5-40", "30:"):
        with pytest.raises(InvalidInputError):
            parse_index_range(bad, 30)
    for name in ("train-volume.tif", "train-labels.tif"):  # the preset only looks for the files here
        (tmp_path / name).touch()
    preset = isbi2012_preset(tmp_path)
    assert preset.train_indices == tuple(range(25)) and preset.val_indices == (25, 26, 27, 28, 29)
    assert preset.class_names == ("membrane", "cell")
    with pytest.raises(InvalidInputError):
        make_samples(images, labels[:, :8], spatial_dims=2)


def test_missing_or_foreign_checkpoint_is_a_named_error(tmp_path):
    with pytest.raises(InvalidInputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="garbage.pt: not a readable"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(InvalidInputError, match="not a unet-export checkpoint"):
        load_checkpoint(foreign)


def test_training_device_names():
    from export.train import training_device

    assert training_device("cpu") == torch.device("cpu")
    assert training_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "cuda:-1", ""):
        with pytest.raises(InvalidInputError, match="auto, cpu, cuda or cuda:N"):
            training_device(bad)
    # a GPU that torch cannot use is a named error, never a silent CPU run
    missing = "cuda:0" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(InvalidInputError, match="--device cpu|CUDA GPU"):
        training_device(missing)


@pytest.mark.cuda
def test_training_on_cuda_in_mixed_precision_learns_and_loads_on_the_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")
    images, labels = _synthetic(seed=3)
    samples = make_samples(images, labels, spatial_dims=2)
    losses = []
    best = train(_config(), samples, samples[:1], tmp_path, device="cuda",
                 on_step=lambda step, loss: losses.append(loss))
    assert all(np.isfinite(losses)) and np.mean(losses[-8:]) < 0.6 * np.mean(losses[:4])
    assert "CUDA" in best["hardware"] and np.isfinite(best["best"]["rand_error"])
    model, _ = model_from_checkpoint(tmp_path / "best.pt")  # saved from the GPU, rebuilt on the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_train_cli_refuses_an_unusable_gpu_before_reading_data(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is usable here")
    from export.cli import main

    status = main(["train", "--preset", "isbi2012", "--data-dir", str(tmp_path / "none"), "--out",
                   str(tmp_path / "run"), "--device", "cuda"])
    assert status == 2 and "--device cpu" in capsys.readouterr().err and not (tmp_path / "run").exists()
