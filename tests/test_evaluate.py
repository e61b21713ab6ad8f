"""sdk.metrics.evaluate: pairing, per-item scores, aggregates, failures, interrupts, reports, plots.

References are independent of evaluate's plumbing: the ISBI scores of each slice and of the whole stack
computed directly with sdk.metrics.isbi2012 (pooled == the stack scored as one), plain numpy means, and
scikit-image's VI / adapted Rand error on scikit-image's own connected components.
"""
import math

import numpy as np
import pytest
from skimage.measure import label as sk_label
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_vi

import sdk.metrics as metrics
from sdk.errors import InvalidInputError, OutputExistsError
from sdk.io import write_array
from sdk.metrics.evaluate import evaluate
from sdk.metrics.inputs import Failure, make_tasks, prepare_proposal, prepare_truth
from sdk.metrics.report import ItemResult, Report, mean_scores


def membrane_slice(rng, shape=(48, 56), cells=9):
    """uint8 truth (255 cells, 0 membranes between Voronoi cells) and a noisy float32 proposal."""
    seeds = rng.random((cells, 2)) * shape
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    cell = np.argmin(d2, axis=-1)
    membrane = np.zeros(shape, bool)
    membrane[1:, :] |= cell[1:, :] != cell[:-1, :]
    membrane[:, 1:] |= cell[:, 1:] != cell[:, :-1]
    truth = np.where(membrane, 0, 255).astype(np.uint8)
    p = (truth > 0).astype(np.float64)
    p[rng.random(shape) < 0.03] = 1.0  # gaps in membranes -> mergers
    p[rng.integers(0, shape[0]), :] = 0.0  # a spurious membrane line -> splits
    p = np.clip(p + rng.normal(0, 0.25, shape), 0, 1)
    return truth, (np.round(p * 255) / 255).astype(np.float32)


def membrane_stack(seed, depth=6, shape=(48, 56)):
    rng = np.random.default_rng(seed)
    pairs = [membrane_slice(rng, shape) for _ in range(depth)]
    return np.stack([t for t, _ in pairs]), np.stack([p for _, p in pairs])


def plain(report: Report) -> dict:
    """Comparable form (NaN-safe): the JSON dict."""
    return report.to_dict()


# --------------------------------------------------------------------------------------------------
# pairing and preparation (no metric needed)


def test_directories_pair_by_name_and_report_the_rest(tmp_path):
    truth_dir, prop_dir = tmp_path / "truth", tmp_path / "prop"
    truth_dir.mkdir(), prop_dir.mkdir()
    img = np.zeros((8, 8), np.uint8)
    for name in ("a.tif", "b.png", "only_truth.npy", "dup.tif", "dup.npy"):
        write_array(truth_dir / name, img)
    for name in ("a.npy", "b.tif", "only_prop.tif", "dup.tif"):
        write_array(prop_dir / name, img.astype(np.float32) if name.endswith("npy") else img)
    (truth_dir / "notes.txt").write_text("not an image")

    tasks, failures = make_tasks(truth_dir, prop_dir)
    assert [(t.name, t.truth.endswith("a.tif"), t.proposal.endswith("a.npy")) for t in tasks][:1] == [
        ("a", True, True)
    ]
    assert [t.name for t in tasks] == ["a", "b"]
    by_name = {f.name: f.error for f in failures}
    assert set(by_name) == {"dup", "only_prop", "only_truth"}
    assert "several files named 'dup'" in by_name["dup"]
    assert "no ground truth" in by_name["only_prop"]
    assert "no proposal" in by_name["only_truth"]


def test_single_stack_pair_is_cut_into_slices_and_volumes_stay_whole():
    truth, proposal = membrane_stack(0, depth=3)
    tasks, failures = make_tasks(truth, proposal, mode="2d")
    assert failures == [] and [t.name for t in tasks] == ["array[0]", "array[1]", "array[2]"]
    np.testing.assert_array_equal(tasks[1].truth, truth[1])
    tasks, failures = make_tasks(truth, proposal, mode="3d")
    assert failures == [] and [t.name for t in tasks] == ["array"] and tasks[0].truth.shape == truth.shape


def test_mismatched_shapes_become_a_named_failure(tmp_path):
    write_array(tmp_path / "gt.tif", np.zeros((2, 8, 8), np.uint8))
    write_array(tmp_path / "pred.tif", np.zeros((2, 8, 9), np.float32))
    tasks, failures = make_tasks(str(tmp_path / "gt.tif"), str(tmp_path / "pred.tif"))
    assert tasks == []
    assert failures == [Failure("gt", "gt: truth shape (2, 8, 8) differs from proposal shape (2, 8, 9)")]


def test_pairing_errors_that_stop_the_run(tmp_path):
    with pytest.raises(InvalidInputError, match="holds no image files"):
        make_tasks(tmp_path, tmp_path)
    write_array(tmp_path / "a.npy", np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="cannot pair a set"):
        make_tasks(tmp_path, np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="no such file"):
        make_tasks(str(tmp_path / "missing.tif"), np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="mode must be"):
        make_tasks(np.zeros((4, 4)), np.zeros((4, 4)), mode="4d")


def test_npz_key_and_mapping_inputs(tmp_path):
    truth, proposal = membrane_stack(1, depth=2)
    np.savez(tmp_path / "set.npz", truth=truth, proposal=proposal)
    tasks, failures = make_tasks(f"{tmp_path / 'set.npz'}:truth", f"{tmp_path / 'set.npz'}:proposal")
    assert failures == [] and len(tasks) == 2
    np.testing.assert_array_equal(tasks[1].proposal, proposal[1])
    tasks, failures = make_tasks({"x": truth[0], "y": truth[1]}, {"x": proposal[0]})
    assert [t.name for t in tasks] == ["x"] and failures == [Failure("y", "y: no proposal with this name")]


def test_zarr_arrays_pair_like_stacks(tmp_path):
    pytest.importorskip("zarr")
    truth, proposal = membrane_stack(4, depth=2)
    write_array(tmp_path / "gt.zarr", truth)
    write_array(tmp_path / "pr.zarr", proposal)
    tasks, failures = make_tasks(tmp_path / "gt.zarr", tmp_path / "pr.zarr")
    assert failures == [] and [t.name for t in tasks] == ["gt[0]", "gt[1]"]
    np.testing.assert_array_equal(tasks[1].proposal, proposal[1])


def test_truth_must_hold_integers():
    assert prepare_truth(np.array([[0.0, 2.0]]), name="s").dtype == np.int64
    with pytest.raises(InvalidInputError, match=r"s7: ground truth must hold integer labels, found 0\.5"):
        prepare_truth(np.array([[0.0, 0.5]]), name="s7")
    with pytest.raises(InvalidInputError, match="NaN"):
        prepare_truth(np.array([[0.0, np.nan]]), name="s")


def test_proposal_kinds():
    labels = np.array([[0, 3], [7, 0]], np.uint8)
    prob, lab = prepare_proposal(labels, kind="auto", name="x")  # integers are labels, never 0..255 probabilities
    np.testing.assert_array_equal(prob, [[0, 1], [1, 0]])
    assert lab is labels
    prob, lab = prepare_proposal(np.array([[0, 51, 255]], np.uint8), kind="probabilities", name="x")
    np.testing.assert_allclose(prob, [[0, 0.2, 1]], rtol=1e-7) and lab is None
    prob, lab = prepare_proposal(np.array([[0.25]], np.float32), kind="auto", name="x")
    assert prob.dtype == np.float32 and lab is None
    with pytest.raises(InvalidInputError, match="integer labels"):
        prepare_proposal(np.array([[0.25]]), kind="labels", name="x")


# --------------------------------------------------------------------------------------------------
# report round trips


def made_up_report() -> Report:
    items = [
        ItemResult("a[0]", (4, 5), {"rand_error": 0.1, "rand_threshold": 0.5, "vi": 1 / 3},
                   [{"threshold": 0.0, "rand_error": 0.3}, {"threshold": 0.1, "rand_error": 0.1}]),
        ItemResult("a[1]", (4, 5), {"rand_error": math.nan, "rand_threshold": 0.0, "vi": 2.0}, []),
    ]
    return Report.from_items(items, failures=[Failure("b", "b: cannot read (x, y)")],
                             pooled={"rand_error": 0.2, "rand_threshold": 0.5},
                             pooled_table=[{"threshold": 0.5, "rand_error": 0.2}], metrics=("isbi2012", "vi"),
                             mode="2d", not_scored=["c"], interrupted=True)


def test_mean_is_numpy_nanmean():
    report = made_up_report()
    assert report.mean == pytest.approx({"rand_error": np.nanmean([0.1, np.nan]), "vi": np.mean([1 / 3, 2.0])})
    assert "rand_threshold" not in mean_scores(report.items)
    assert report.best_thresholds == {"rand": 0.5}


def test_json_round_trip(tmp_path):
    report = made_up_report()
    report.to_json(tmp_path / "r.json")
    back = Report.from_json(tmp_path / "r.json")
    assert plain(back) == plain(report)
    assert math.isnan(back.items[1].scores["rand_error"]) and back.interrupted
    with pytest.raises(OutputExistsError):
        report.to_json(tmp_path / "r.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InvalidInputError, match="not a unet-sdk evaluate report"):
        Report.from_json(tmp_path / "bad.json")


def test_csv_round_trip_keeps_everything_but_the_tables(tmp_path):
    report = made_up_report()
    report.to_csv(tmp_path / "r.csv")
    back = Report.from_csv(tmp_path / "r.csv")
    expected = plain(report)
    expected["pooled_table"] = []
    for item in expected["items"]:
        item["table"] = []
    assert plain(back) == expected


def test_terminal_table_names_items_aggregates_and_failures():
    text = made_up_report().format()
    for needle in ("a[0]", "mean (2)", "pooled (ISBI)", "best thresholds", "b: cannot read", "interrupted"):
        assert needle in text


# --------------------------------------------------------------------------------------------------
# scoring (needs the C++ core)

@pytest.fixture(scope="module")
def stack():
    return membrane_stack(2, depth=6)


@pytest.fixture(scope="module")
def serial_report(stack):
    return evaluate(*stack, metrics=("isbi2012", "warping", "vi", "adapted_rand"), workers=1, progress=False)


def test_items_and_aggregates_match_direct_computation(stack, serial_report):
    truth, proposal = stack
    report = serial_report
    assert report.ok and [r.name for r in report.items] == [f"array[{z}]" for z in range(len(truth))]
    for z, item in enumerate(report.items):
        direct = metrics.isbi2012(truth[z], proposal[z])
        assert item.scores["warping_error"] == direct.warping_error
        assert item.scores["rand_error"] == direct.rand_error
        assert item.scores["pixel_threshold"] == direct.pixel_threshold
        w = metrics.warping_error(truth[z], proposal[z], threshold=0.5, radius=20)
        assert item.scores["warp_splits"] == w.splits and item.scores["warp_error"] == w.error
    # ISBI pooled definition == the whole set scored as one stack
    whole = metrics.isbi2012(truth, proposal)
    for key in ("warping_error", "warping_threshold", "rand_error", "rand_threshold", "pixel_error",
                "pixel_threshold"):
        assert report.pooled[key] == pytest.approx(getattr(whole, key), rel=1e-12, abs=1e-15), key
    assert len(report.pooled_table) == len(report.items[0].table) > 0
    for key in ("warping_error", "vi_split", "adapted_rand_error", "warp_mergers"):
        assert report.mean[key] == pytest.approx(np.mean([r.scores[key] for r in report.items]), rel=1e-12)


def test_vi_and_adapted_rand_match_scikit_image(stack, serial_report):
    truth, proposal = stack
    for z, item in enumerate(serial_report.items):
        t = sk_label(truth[z] > 0, connectivity=1)
        p = sk_label(proposal[z] > 0.5, connectivity=1)
        split, merge = sk_vi(t, p)
        assert (item.scores["vi_split"], item.scores["vi_merge"]) == pytest.approx((split, merge), abs=1e-12)
        assert item.scores["adapted_rand_error"] == pytest.approx(sk_adapted_rand_error(t, p)[0], abs=1e-12)


def test_serial_equals_threads(stack, serial_report):
    threaded = evaluate(*stack, metrics=("isbi2012", "warping", "vi", "adapted_rand"), workers=3, progress=False)
    assert plain(threaded) == plain(serial_report)


def test_label_images_are_used_as_labels():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 6, (40, 40)).astype(np.int32)
    proposal = rng.integers(0, 6, (40, 40)).astype(np.uint16)
    report = evaluate(truth, proposal, metrics=("vi", "adapted_rand"), progress=False)
    split, merge = sk_vi(truth, proposal)
    assert (report.items[0].scores["vi_split"], report.items[0].scores["vi_merge"]) == pytest.approx(
        (split, merge), abs=1e-12)


def test_slice_without_foreground_gives_nan_where_undefined(stack):
    truth, proposal = stack[0][:3].copy(), stack[1][:3]
    truth[1] = 0
    report = evaluate(truth, proposal, progress=False)
    assert report.ok and len(report.items) == 3
    empty = report.items[1].scores
    assert math.isnan(empty["rand_error"]) and math.isnan(empty["adapted_rand_error"])
    assert empty["vi_merge"] == 0.0 and empty["pixel_error"] > 0  # every proposal pixel is a false positive
    others = [report.items[0].scores["adapted_rand_error"], report.items[2].scores["adapted_rand_error"]]
    assert report.mean["adapted_rand_error"] == pytest.approx(np.mean(others), rel=1e-12)
    assert report.pooled["rand_error"] == pytest.approx(
        metrics.pool_isbi2012([metrics.isbi2012(truth[[0]], proposal[[0]]),
                               metrics.isbi2012(truth[[2]], proposal[[2]])]).rand_error, rel=1e-12)


def test_partial_failures_are_named_and_the_rest_is_scored(tmp_path, stack):
    truth, proposal = stack
    gt, pr = tmp_path / "gt", tmp_path / "pr"
    gt.mkdir(), pr.mkdir()
    for z in range(3):
        write_array(gt / f"s{z}.tif", truth[z])
        write_array(pr / f"s{z}.npy", proposal[z])
    write_array(gt / "wide.tif", truth[0])
    write_array(pr / "wide.npy", proposal[0][:, :-1])
    (gt / "broken.tif").write_bytes(b"not a tiff")
    write_array(pr / "broken.npy", proposal[0])
    write_array(gt / "fraction.npy", truth[0] / 7.0)
    write_array(pr / "fraction.npy", proposal[0])
    write_array(gt / "lonely.tif", truth[0])

    report = evaluate(gt, pr, workers=2, progress=False)
    assert [r.name for r in report.items] == ["s0", "s1", "s2"]
    errors = {f.name: f.error for f in report.failures}
    assert set(errors) == {"wide", "broken", "fraction", "lonely"}
    assert "differs from proposal shape" in errors["wide"]
    assert "broken.tif: cannot read" in errors["broken"]
    assert "integer labels" in errors["fraction"]
    assert not report.ok
    direct = evaluate(truth[:3], proposal[:3], workers=1, progress=False)
    assert [r.scores for r in report.items] == [r.scores for r in direct.items]


def test_stack_files_in_a_directory_give_one_item_per_slice(tmp_path, stack):
    truth, proposal = stack
    (tmp_path / "gt").mkdir(), (tmp_path / "pr").mkdir()
    write_array(tmp_path / "gt" / "vol.tif", truth[:4])
    write_array(tmp_path / "pr" / "vol.npy", proposal[:4])
    report = evaluate(tmp_path / "gt", tmp_path / "pr", progress=False)
    direct = evaluate(truth[:4], proposal[:4], progress=False)
    assert [r.name for r in report.items] == [f"vol[{z}]" for z in range(4)]
    assert [r.scores for r in report.items] == [r.scores for r in direct.items]
    assert report.pooled == direct.pooled


def test_ctrl_c_keeps_the_partial_report(stack):
    def interrupt_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    report = evaluate(*stack, workers=1, progress=interrupt_after_two)
    assert report.interrupted and not report.ok
    assert [r.name for r in report.items] == ["array[0]", "array[1]"]
    assert report.not_scored == [f"array[{z}]" for z in range(2, 6)]
    assert report.pooled  # pooled over what was scored
    threaded = evaluate(*stack, workers=2, progress=interrupt_after_two)
    assert threaded.interrupted and len(threaded.items) + len(threaded.not_scored) == 6


def test_mode_3d_scores_volumes():
    truth, proposal = membrane_stack(3, depth=4, shape=(24, 24))
    report = evaluate(truth, proposal, metrics=("warping", "vi"), mode="3d", progress=False)
    assert [r.name for r in report.items] == ["array"] and report.items[0].shape == truth.shape
    w = metrics.warping_error(truth, proposal, mode="3d")
    assert report.items[0].scores["warp_mismatches"] == w.mismatches
    t = sk_label(truth > 0, connectivity=1)
    p = sk_label(proposal > 0.5, connectivity=1)
    assert report.items[0].scores["vi_split"] == pytest.approx(sk_vi(t, p)[0], abs=1e-12)


def test_bad_options():
    with pytest.raises(InvalidInputError, match="unknown metrics"):
        evaluate(np.zeros((4, 4)), np.zeros((4, 4)), metrics=("dice",))
    with pytest.raises(InvalidInputError, match="workers"):
        evaluate(np.zeros((4, 4)), np.zeros((4, 4)), workers=0)


# --------------------------------------------------------------------------------------------------
# plots


def test_plots_are_written_as_valid_images(tmp_path, stack, serial_report):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from sdk.metrics.plots import write_plots

    paths = write_plots(serial_report, *stack, tmp_path / "plots", worst=2)
    names = sorted(p.name for p in paths)
    assert names[0] == "curves.png" and len(names) == 3
    worst = max(serial_report.items, key=lambda r: r.scores["warping_error"]).name
    assert any(worst.replace("[", "_").replace("]", "_") in n for n in names)
    for path in paths:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
            assert img.format == "PNG" and img.size[0] > 300 and len(colours) > 10
    with pytest.raises(OutputExistsError):
        write_plots(serial_report, *stack, tmp_path / "plots", worst=2)


def test_overlay_paints_each_error_kind_in_its_colour():
    pytest.importorskip("matplotlib")
    from sdk.metrics.plots import ERROR_STYLES, error_overlay_rgb

    classification = np.zeros((9, 9), np.uint8)
    classification[2, 2], classification[6, 6] = 1, 2
    rgb = error_overlay_rgb(np.zeros((9, 9)), classification)
    assert tuple(rgb[2, 2]) == ERROR_STYLES[1][1] and tuple(rgb[1, 3]) == ERROR_STYLES[1][1]  # grown 3x3
    assert tuple(rgb[6, 6]) == ERROR_STYLES[2][1]
    assert tuple(rgb[4, 4]) == (0.25, 0.25, 0.25)
