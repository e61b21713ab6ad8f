"""`unet-sdk evaluate`: outputs equal the library's report, exit codes, refusals, plots, --model."""
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from sdk.cli.main import main
from sdk.io import read_image, write_array
from sdk.metrics.evaluate import evaluate
from sdk.metrics.report import Report
from test_evaluate import membrane_stack


@pytest.fixture(scope="module")
def stack():
    return membrane_stack(11, depth=4)


@pytest.fixture()
def stack_files(tmp_path, stack):
    truth, proposal = stack
    write_array(tmp_path / "gt.tif", truth)
    write_array(tmp_path / "pred.tif", proposal)
    return tmp_path / "gt.tif", tmp_path / "pred.tif"


def test_two_stacks_report_equals_the_library(tmp_path, stack, stack_files, capsys):
    gt, pred = stack_files
    rc = main(["evaluate", str(gt), str(pred), "-o", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"),
               "--workers", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "pooled (ISBI)" in out and "gt[3]" in out and "best thresholds" in out
    expected = evaluate(*stack, workers=1, progress=False).to_dict()
    for item in expected["items"]:
        item["name"] = item["name"].replace("array", "gt")
    assert json.loads((tmp_path / "r.json").read_text()) == expected
    from_csv = Report.from_csv(tmp_path / "r.csv")
    assert [r.scores for r in from_csv.items] == [r["scores"] for r in expected["items"]]


def test_failures_are_listed_and_give_exit_1(tmp_path, stack, capsys):
    truth, proposal = stack
    (tmp_path / "gt").mkdir(), (tmp_path / "pr").mkdir()
    write_array(tmp_path / "gt" / "good.tif", truth[0])
    write_array(tmp_path / "pr" / "good.tif", proposal[0])
    write_array(tmp_path / "gt" / "bad.tif", truth[1])
    write_array(tmp_path / "pr" / "bad.tif", proposal[1][:-2])
    rc = main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "pr"), "-o", str(tmp_path / "r.json"),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 item(s) failed" in captured.err and "bad: truth shape" in captured.out
    report = Report.from_json(tmp_path / "r.json")
    assert [r.name for r in report.items] == ["good"] and [f.name for f in report.failures] == ["bad"]


def test_nothing_scored_is_exit_2(tmp_path, stack, capsys):
    truth, proposal = stack
    write_array(tmp_path / "gt.tif", truth)
    write_array(tmp_path / "pred.tif", proposal[:2])
    assert main(["evaluate", str(tmp_path / "gt.tif"), str(tmp_path / "pred.tif"), "--no-progress"]) == 2
    assert "no item could be scored" in capsys.readouterr().err


def test_refuses_to_overwrite_before_scoring(tmp_path, stack_files, capsys):
    gt, pred = stack_files
    (tmp_path / "r.json").write_text("keep me")
    assert main(["evaluate", str(gt), str(pred), "-o", str(tmp_path / "r.json"), "--no-progress"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "r.json").read_text() == "keep me"
    assert main(["evaluate", str(gt), str(pred), "-o", str(tmp_path / "r.json"), "--force", "--no-progress"]) == 0
    assert Report.from_json(tmp_path / "r.json").items


def test_argument_errors(stack_files, capsys):
    gt, pred = stack_files
    assert main(["evaluate", str(gt), "--no-progress"]) == 2
    assert "either PROPOSAL or --model" in capsys.readouterr().err
    assert main(["evaluate", str(gt), str(pred), "--model", "m.onnx", "--no-progress"]) == 2
    assert "--model and --images go together" in capsys.readouterr().err
    assert main(["evaluate", str(gt) + ".missing", str(pred), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_plots_option_writes_pngs(tmp_path, stack_files, capsys):
    pytest.importorskip("matplotlib")
    gt, pred = stack_files
    assert main(["evaluate", str(gt), str(pred), "--plots", str(tmp_path / "plots"), "--worst", "1",
                 "--metrics", "isbi2012", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir())[0] == "curves.png"
    assert len(list((tmp_path / "plots").glob("overlay_01_gt_*_.png"))) == 1


def test_model_and_images_predict_then_score(tmp_path, stack, capsys):
    pytest.importorskip("onnxruntime")
    from onnx_fixtures import make_model

    from sdk import Segmenter

    truth, _ = stack
    rng = np.random.default_rng(0)
    images = (truth.astype(np.float32) + rng.normal(0, 40, truth.shape)).astype(np.float32)
    model_bytes, _ = make_model("pointwise", seed=3)
    (tmp_path / "model.onnx").write_bytes(model_bytes)
    write_array(tmp_path / "gt.tif", truth)
    write_array(tmp_path / "img.tif", images)
    rc = main(["evaluate", str(tmp_path / "gt.tif"), "--model", str(tmp_path / "model.onnx"),
               "--images", str(tmp_path / "img.tif"), "-o", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    segmenter = Segmenter(str(tmp_path / "model.onnx"))
    probability = segmenter.predict_proba(images)[segmenter.metadata.foreground_class]
    expected = evaluate(truth, probability, progress=False).to_dict()
    got = json.loads((tmp_path / "r.json").read_text())
    assert [i["scores"] for i in got["items"]] == [i["scores"] for i in expected["items"]]
    assert got["pooled"] == expected["pooled"]


def test_ctrl_c_writes_the_partial_report_and_exits_130(tmp_path, stack_files, monkeypatch, capsys):
    module = importlib.import_module("sdk.metrics.evaluate")  # the module, shadowed by the function
    real_score_task = module.score_task

    def interrupted_on_third(index, task, options):
        if index == 2:
            raise KeyboardInterrupt
        return real_score_task(index, task, options)

    monkeypatch.setattr(module, "score_task", interrupted_on_third)
    gt, pred = stack_files
    rc = main(["evaluate", str(gt), str(pred), "-o", str(tmp_path / "r.json"), "--workers", "1", "--no-progress"])
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    report = Report.from_json(tmp_path / "r.json")
    assert report.interrupted and [r.name for r in report.items] == ["gt[0]", "gt[1]"]
    assert report.not_scored == ["gt[2]", "gt[3]"]


def test_model_on_a_directory_names_images_it_could_not_predict(tmp_path, stack, capsys):
    pytest.importorskip("onnxruntime")
    from onnx_fixtures import make_model

    truth, _ = stack
    (tmp_path / "model.onnx").write_bytes(make_model("pointwise", seed=3)[0])
    (tmp_path / "gt").mkdir(), (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        write_array(tmp_path / "gt" / f"{name}.tif", truth[0])
    write_array(tmp_path / "img" / "a.tif", truth[0].astype(np.float32))
    (tmp_path / "img" / "b.tif").write_bytes(b"junk")
    rc = main(["evaluate", str(tmp_path / "gt"), "--model", str(tmp_path / "model.onnx"), "--images",
               str(tmp_path / "img"), "--metrics", "vi", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "b: not predicted:" in out and "b.tif: cannot read" in out


def test_overlay_title_numbers_come_from_the_one_threshold_drawn(tmp_path, stack_files, monkeypatch):
    """The title once showed an item's warping error at its own best threshold beside the mismatch
    count at the pooled one; every number must now be the warping error at the drawn threshold."""
    pytest.importorskip("matplotlib")
    from sdk.metrics import plots, warping_error

    titles = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, overwrite: (
        titles.append((path, fig.get_suptitle())), save(fig, path, overwrite))[1])
    gt, pred = stack_files
    assert main(["evaluate", str(gt), str(pred), "--plots", str(tmp_path / "plots"), "--worst", "1",
                 "--no-progress"]) == 0
    overlay_title = next(text for path, text in titles if Path(path).name.startswith("overlay_"))
    report_threshold = float(overlay_title.split("threshold ")[1].split(":")[0])
    truth, proposal = read_image(gt), read_image(pred)
    name = overlay_title.split(":")[0]  # e.g. gt[2]
    z = int(name.split("[")[1].rstrip("]"))
    result = warping_error(truth[z], proposal[z], threshold=report_threshold)
    assert f"warping error {result.error:.4g}" in overlay_title
    assert f"{int(result.mismatches)} px mismatched" in overlay_title
