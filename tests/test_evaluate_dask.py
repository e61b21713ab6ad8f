"""evaluate on a Dask distributed cluster gives the serial report, for in-memory stacks and for
directories read by the workers; an unreachable scheduler is a clear error. One LocalCluster (two
single-threaded worker processes, so results really cross process boundaries) serves the module."""
import importlib
import logging
import socket

import pytest

from sdk.errors import RuntimeUnavailableError
from sdk.io import write_array
from sdk.metrics.evaluate import evaluate
from test_evaluate import membrane_stack

distributed = pytest.importorskip("distributed")

METRICS = ("isbi2012", "warping", "vi", "adapted_rand")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def stack():
    return membrane_stack(21, depth=12)  # more tasks than the submission window (8)


def test_dask_equals_serial(cluster, stack, tmp_path):
    serial = evaluate(*stack, metrics=METRICS, workers=1, progress=False)
    with distributed.Client(cluster) as client:
        on_dask = evaluate(*stack, metrics=METRICS, client=client, progress=False)
        # directories: the workers read the files themselves
        truth, proposal = stack
        (tmp_path / "gt").mkdir(), (tmp_path / "pr").mkdir()
        for z in range(len(truth)):
            write_array(tmp_path / "gt" / f"s{z:02d}.tif", truth[z])
            write_array(tmp_path / "pr" / f"s{z:02d}.npy", proposal[z])
        from_files = evaluate(tmp_path / "gt", tmp_path / "pr", metrics=METRICS, client=client, progress=False)
    assert on_dask.to_dict() == serial.to_dict()
    assert [r.scores for r in from_files.items] == [r.scores for r in serial.items]
    assert from_files.pooled == serial.pooled and from_files.pooled_table == serial.pooled_table


def test_scheduler_address(cluster, stack):
    truth, proposal = stack
    report = evaluate(truth[:2], proposal[:2], metrics=("isbi2012",), client=cluster.scheduler_address,
                      progress=False)
    assert [r.name for r in report.items] == ["array[0]", "array[1]"]


def test_unreachable_scheduler_is_a_clear_error(stack, monkeypatch):
    # the module, not the function sdk.metrics.evaluate that shadows it as a package attribute
    monkeypatch.setattr(importlib.import_module("sdk.metrics.evaluate"), "SCHEDULER_TIMEOUT", "1s")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeUnavailableError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        evaluate(*stack, client=f"tcp://127.0.0.1:{port}", progress=False)


def test_cli_scheduler_option(cluster, stack, tmp_path, monkeypatch, capsys):
    from sdk.cli.main import main
    from sdk.metrics.report import Report

    truth, proposal = stack
    write_array(tmp_path / "gt.tif", truth[:3])
    write_array(tmp_path / "pr.tif", proposal[:3])
    args = ["evaluate", str(tmp_path / "gt.tif"), str(tmp_path / "pr.tif"), "--no-progress"]
    assert main(args + ["--scheduler", cluster.scheduler_address, "-o", str(tmp_path / "r.json")]) == 0
    serial = evaluate(truth[:3], proposal[:3], workers=1, progress=False)
    assert [r.scores for r in Report.from_json(tmp_path / "r.json").items] == [r.scores for r in serial.items]

    monkeypatch.setattr(importlib.import_module("sdk.metrics.evaluate"), "SCHEDULER_TIMEOUT", "1s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(args + ["--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in capsys.readouterr().err
