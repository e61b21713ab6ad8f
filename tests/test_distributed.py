"""Distributed prediction equals the single-machine prediction bit for bit, writes OME-Zarr chunk by chunk,
resumes, survives a killed worker and reports failing chunks. One LocalCluster (two single-threaded worker
processes, so blocks really cross process boundaries) serves the module."""
import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from onnx_fixtures import make_model
from sdk import Segmenter
from sdk.errors import InvalidInputError, OutputExistsError
from sdk.model_metadata import Normalization

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from sdk.distributed import PredictionIncompleteError, predict_dask, predict_files, predict_to_zarr  # noqa: E402
from sdk.ngff import create_ngff, read_ngff  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def valid2d():
    return make_model("valid", seed=1)[0]


@pytest.fixture(scope="module")
def same2d():
    # overlap-tile on a same-padding model is exact only as far as its halo covers the receptive field:
    # the distributed run must run the very same tiles
    return make_model("same", seed=2, metadata=dict(tile_size=(32, 32), tile_overlap=0.25, blend="none"))[0]


def zarr_copy(path, image, chunks):
    array = zarr.create_array(str(path), shape=image.shape, dtype=image.dtype, chunks=chunks)
    array[...] = image
    return array


def settle(client, timeout=30.0):
    """Wait until no worker runs a task. A cancelled task that was running stays in its worker's ``executing``
    set until its thread returns (it may still write its chunk), though the scheduler no longer lists it."""
    import time

    def running(dask_worker):
        return len(dask_worker.state.executing)

    deadline = time.monotonic() + timeout
    while (any(client.processing().values()) or any(client.run(running).values())) and time.monotonic() < deadline:
        time.sleep(0.05)


def reference(model, image, *, proba=False, **options):
    seg = Segmenter(model, device="cpu", threads=1, **options)
    return (seg.predict_proba if proba else seg.predict)(image)


def test_local_cluster_runs_without_the_dask_profiler():
    import dask

    from sdk.distributed.workers import local_cluster

    with local_cluster(1, 2) as cluster, distributed.Client(cluster) as own:
        assert own.run(lambda: dask.config.get("distributed.worker.profile.enabled")) == {
            address: False for address in own.scheduler_info()["workers"]
        }
        assert [w["nthreads"] for w in own.scheduler_info()["workers"].values()] == [2]
    assert dask.config.get("distributed.worker.profile.enabled")  # this process's configuration is untouched


def test_2d_stack_equals_single_machine(client, valid2d, tmp_path):
    stack = np.random.default_rng(0).normal(size=(3, 70, 90)).astype(np.float32)
    for proba in (False, True):
        expected = reference(valid2d, stack, proba=proba, tile=32)
        sources = (zarr_copy(tmp_path / f"s{proba}.zarr", stack, (1, 30, 40)), da.from_array(stack, chunks=(2, 50, 33)))
        for source in sources:
            result = predict_dask(valid2d, source, output="proba" if proba else "labels", tile=32, client=client)
            assert len(result.chunks[-1]) > 1 and len(result.chunks[-2]) > 1  # several blocks per image
            computed = client.compute(result).result()
            assert computed.dtype == expected.dtype and np.array_equal(computed, expected)


def test_2d_image_larger_than_a_chunk_with_whole_image_statistics(client, same2d, tmp_path):
    # the image's brightness drifts, so per-block statistics would change every block's input
    rng = np.random.default_rng(1)
    image = (rng.random((150, 170)) * 100 + np.linspace(0, 400, 170)).astype(np.uint16)
    expected = reference(same2d, image, proba=True, tile=32)
    np.save(tmp_path / "image.npy", image)
    for source in (image, np.load(tmp_path / "image.npy", mmap_mode="r")):  # a memmap travels as its file name
        result = predict_dask(same2d, source, output="proba", tile=32, chunks=(40, 40), client=client)
        assert result.chunks[1][0] == 40 and len(result.chunks[1]) == 4
        assert np.array_equal(client.compute(result).result(), expected)


def test_3d_volume_with_a_3d_model(client, tmp_path):
    model = make_model("valid", spatial_dims=3, seed=3)[0]
    volume = np.random.default_rng(2).normal(size=(30, 40, 36)).astype(np.float32)
    expected = reference(model, volume, tile=20)
    result = predict_dask(model, zarr_copy(tmp_path / "v.zarr", volume, (10, 16, 16)), tile=20, client=client)
    assert all(len(c) > 1 for c in result.chunks)  # blocks overlap (halo) in all three axes
    assert np.array_equal(client.compute(result).result(), expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_postprocessing_floods_whole_images_after_parallel_blocks(client, tmp_path, spatial_dims):
    from sdk.model_metadata import Postprocessing

    boundaries = Postprocessing("watershed", 0.6, {"chosen_on": "a test"})
    model = make_model("same", spatial_dims=spatial_dims, seed=5, metadata={"postprocessing": boundaries})[0]
    shape = (150, 170) if spatial_dims == 2 else (24, 40, 36)
    image = np.random.default_rng(6).normal(size=shape).astype(np.float32)
    tile = 32 if spatial_dims == 2 else 16
    for proba in (False, True):
        expected = reference(model, image, proba=proba, tile=tile)
        raw = reference(model, image, proba=proba, tile=tile, postprocess=False)
        assert (expected != raw).any()  # the lines change the output
        result = predict_dask(model, zarr_copy(tmp_path / f"in{proba}.zarr", image, (20,) * spatial_dims),
                              output="proba" if proba else "labels", tile=tile, client=client)
        assert all(len(c) > 1 for c in result.chunks[-spatial_dims:])  # the network runs in several blocks
        assert np.array_equal(client.compute(result).result(), expected)


def test_gaussian_blending_equals_single_machine(client):
    model = make_model("same", seed=4)[0]
    image = np.random.default_rng(3).normal(size=(2, 90, 100)).astype(np.float32)
    expected = reference(model, image, proba=True, tile=32, blend="gaussian")
    result = client.compute(predict_dask(model, image, output="proba", tile=32, blend="gaussian", client=client)).result()
    assert np.abs(result - expected).max() <= 1e-5
    assert np.array_equal(result, expected)  # tiles summed in the plan's order: in fact the same bits


def test_writes_ome_zarr_with_the_inputs_calibration_and_refuses_to_overwrite(client, valid2d, tmp_path):
    from sdk.calibration import Calibration

    stack = np.random.default_rng(4).normal(size=(2, 60, 64)).astype(np.float32)
    source = create_ngff(tmp_path / "in.zarr", stack.shape, stack.dtype, chunks=(1, 32, 32),
                         calibration=Calibration("ZYX", (2.0, 0.5, 0.5), ("micrometer",) * 3))
    source[...] = stack
    report = predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, tile=32,
                             chunks=(32, 32))
    assert len(report.written) == report.total == 2 * 2 * 2 and report.skipped == 0
    out = read_ngff(tmp_path / "out.zarr")
    assert out.is_label and out.calibration == Calibration("ZYX", (2.0, 0.5, 0.5), ("micrometer",) * 3)
    assert np.array_equal(out.array[...], reference(valid2d, stack, tile=32))
    with pytest.raises(OutputExistsError, match="is complete"):
        predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, tile=32, chunks=(32, 32))
    assert predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, tile=32,
                           chunks=(32, 32), overwrite=True).total == 8


def test_bad_requests_fail_before_any_work(client, valid2d, tmp_path):
    image = np.zeros((40, 40), np.float32)
    zarr_copy(tmp_path / "in.zarr", image, (20, 20))
    with pytest.raises(InvalidInputError, match="same store"):
        predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "in.zarr" / "pred", client=client)
    for chunks, message in (((16, 0), "positive"), ((8, 8, 8), "do not match"), (((30, 5), (40,)), "do not tile")):
        with pytest.raises(InvalidInputError, match=message):
            predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, chunks=chunks)
        assert not (tmp_path / "out.zarr").exists()
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(OutputExistsError, match="exists"):
        predict_to_zarr(valid2d, tmp_path / "in.zarr", tmp_path / "taken.zarr", client=client)


def test_interrupted_run_resumes_with_only_the_missing_chunks(client, valid2d, tmp_path):
    stack = np.random.default_rng(5).normal(size=(4, 64, 64)).astype(np.float32)
    zarr_copy(tmp_path / "in.zarr", stack, (1, 64, 64))
    args = (valid2d, tmp_path / "in.zarr", tmp_path / "out.zarr")
    options = dict(client=client, tile=32, chunks=(32, 32))

    def interrupt(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_zarr(*args, progress=interrupt, **options)
    settle(client)  # cancelled tasks that were already running finish their chunk
    level = zarr.open_array(str(tmp_path / "out.zarr" / "0"), mode="r")
    present = {i for i in np.ndindex(4, 2, 2) if (tmp_path / "out.zarr" / "0" / level.metadata.encode_chunk_key(i)).exists()}
    assert 3 <= len(present) < 16
    with pytest.raises(OutputExistsError):  # a different prediction must not resume it
        predict_to_zarr(*args, **{**options, "tile": 48})
    report = predict_to_zarr(*args, **options)
    assert report.skipped == len(present) and sorted(report.written) == sorted(set(np.ndindex(4, 2, 2)) - present)
    assert np.array_equal(read_ngff(tmp_path / "out.zarr").array[...], reference(valid2d, stack, tile=32))


def test_killed_worker_is_replaced_and_the_output_is_complete(client, same2d, tmp_path):
    stack = np.random.default_rng(6).normal(size=(6, 96, 96)).astype(np.float32)
    zarr_copy(tmp_path / "in.zarr", stack, (1, 96, 96))
    victim = sorted(client.scheduler_info()["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    killed = []

    def kill_once(done, total):
        if not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(done)

    report = predict_to_zarr(same2d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, tile=32,
                             chunks=(32, 32), progress=kill_once)
    assert killed and len(report.written) == report.total == 6 * 9
    assert np.array_equal(read_ngff(tmp_path / "out.zarr").array[...], reference(same2d, stack, tile=32))
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_failing_region_is_reported_others_finish_and_the_fix_resumes(client, tmp_path):
    model = make_model("valid", seed=7)[0]
    stack = np.random.default_rng(7).normal(size=(3, 48, 48)).astype(np.float32)
    source = zarr_copy(tmp_path / "in.zarr", stack, (1, 48, 48))
    source[1, 30, 5] = np.nan  # image 1 cannot be normalised: its chunks fail, images 0 and 2 finish
    args = (model, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with pytest.raises(PredictionIncompleteError) as failure:
        predict_to_zarr(*args, client=client, tile=32, chunks=(24, 24))
    assert sorted(i for i, _, _ in failure.value.failures) == [(1, a, b) for a in range(2) for b in range(2)]
    assert "image 1 pixels 0:48, 0:48" in str(failure.value) and "NaN" in str(failure.value)
    written = zarr.open_array(str(tmp_path / "out.zarr" / "0"), mode="r")
    expected = reference(model, stack[[0, 2]], tile=32)
    assert np.array_equal(written[[0, 2]], expected)
    source[1, 30, 5] = 0.0
    report = predict_to_zarr(*args, client=client, tile=32, chunks=(24, 24))
    assert report.skipped == 8 and len(report.written) == 4
    fixed = stack.copy()
    fixed[1, 30, 5] = 0.0
    assert np.array_equal(read_ngff(tmp_path / "out.zarr").array[...], reference(model, fixed, tile=32))


def test_fixed_normalisation_reports_the_block_holding_nan(client, tmp_path):
    model = make_model("valid", seed=8, normalization=Normalization(mode="fixed", mean=0.0, std=1.0))[0]
    image = np.random.default_rng(8).normal(size=(96, 96)).astype(np.float32)
    image[80, 90] = np.inf
    zarr_copy(tmp_path / "in.zarr", image, (48, 48))
    with pytest.raises(PredictionIncompleteError, match="infinite") as failure:
        predict_to_zarr(model, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, tile=24, chunks=(48, 48))
    failed = [i for i, _, _ in failure.value.failures]
    assert (1, 1) in failed and (0, 0) not in failed  # only chunks whose input windows reach the bad pixel


def test_many_files_one_task_each_as_the_cli_writes_them(client, valid2d, tmp_path):
    import functools

    from sdk.cli.predict import plan_outputs, predict_file
    from sdk.io import read_image, write_array

    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(valid2d)
    rng = np.random.default_rng(9)
    images = [rng.normal(size=shape).astype(np.float32) for shape in ((40, 50), (64, 33), (2, 30, 30))]
    (tmp_path / "in").mkdir()
    sources = [str(write_array(tmp_path / "in" / f"img{k}.npy", image)) for k, image in enumerate(images)]
    jobs = plan_outputs(sources, str(tmp_path / "out"), None, kind="labels")
    run_job = functools.partial(predict_file, kind="labels", axes=None, model=str(model_path), overwrite=False)
    written = predict_files(str(model_path), jobs, run_job=run_job, client=client, tile=32)
    assert sorted(written) == sorted(j.target for j in jobs)
    for image, job in zip(images, jobs):
        assert job.target.name == Path(job.source).stem + "_labels.tif"
        assert np.array_equal(read_image(job.target), reference(valid2d, image, tile=32))
    record = json.loads((tmp_path / "out" / ".unet-sdk-run.json").read_text())
    assert record["complete"] is True
    with pytest.raises(OutputExistsError, match="finished run"):
        predict_files(str(model_path), jobs, run_job=run_job, client=client, tile=32)
    # an interrupted run (record unfinished, one output missing) resumes with only that file
    (tmp_path / "out" / ".unet-sdk-run.json").write_text(json.dumps({**record, "complete": False}))
    jobs[1].target.unlink()
    assert predict_files(str(model_path), jobs, run_job=run_job, client=client, tile=32) == [jobs[1].target]


def test_cli_zarr_to_ome_zarr_on_a_scheduler_resumes_nothing_when_complete(client, valid2d, tmp_path, capsys):
    from sdk.cli.main import main

    (tmp_path / "m.onnx").write_bytes(valid2d)
    stack = np.random.default_rng(10).normal(size=(2, 70, 60)).astype(np.float32)
    zarr_copy(tmp_path / "in.zarr", stack, (1, 35, 30))
    args = ["predict", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "out.zarr"), "-m", str(tmp_path / "m.onnx"),
            "--tile", "32", "--scheduler", client.scheduler.address, "--chunks", "32", "--no-progress"]
    assert main(args) == 0
    out = read_ngff(tmp_path / "out.zarr")
    assert out.array.chunks == (1, 32, 32) and np.array_equal(out.array[...], reference(valid2d, stack, tile=32))
    assert main(args) == 2 and "is complete" in capsys.readouterr().err
    assert main(args + ["--force", "--proba"]) == 0
    assert np.array_equal(read_ngff(tmp_path / "out.zarr").array[...], reference(valid2d, stack, proba=True, tile=32))


def test_cli_many_files_on_a_scheduler_write_what_one_machine_writes(client, valid2d, tmp_path):
    from sdk.cli.main import main
    from sdk.io import read_image, write_array

    (tmp_path / "m.onnx").write_bytes(valid2d)
    rng = np.random.default_rng(11)
    (tmp_path / "in").mkdir()
    for k in range(3):
        write_array(tmp_path / "in" / f"s{k}.tif", rng.normal(size=(50 + k, 40)).astype(np.float32))
    common = [str(tmp_path / "in"), "-m", str(tmp_path / "m.onnx"), "--tile", "32", "--no-progress"]
    assert main(["predict", *common, "-o", str(tmp_path / "one")]) == 0
    assert main(["predict", *common, "-o", str(tmp_path / "dask"), "--scheduler", client.scheduler.address]) == 0
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["s0_labels.tif", "s1_labels.tif", "s2_labels.tif"]
    for name in names:
        assert np.array_equal(read_image(tmp_path / "dask" / name), read_image(tmp_path / "one" / name))


def test_cli_local_cluster_prints_its_dashboard_and_bad_options_are_errors(valid2d, tmp_path, capsys):
    from sdk.cli.main import main

    (tmp_path / "m.onnx").write_bytes(valid2d)
    zarr_copy(tmp_path / "in.zarr", np.zeros((40, 40), np.float32), (20, 20))
    base = ["predict", str(tmp_path / "in.zarr"), "-m", str(tmp_path / "m.onnx"), "--tile", "32", "--no-progress"]
    assert main(base + ["-o", str(tmp_path / "a.zarr"), "--chunks", "16"]) == 2
    assert "--chunks sets the chunks of a distributed zarr output" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "b.zarr"), "--workers", "1", "--instances"]) == 2
    assert "run on one machine" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "c.zarr"), "--workers", "1"]) == 0
    assert "dashboard http" in capsys.readouterr().err
    assert np.array_equal(read_ngff(tmp_path / "c.zarr").array[...], reference(valid2d, np.zeros((40, 40), np.float32), tile=32))
