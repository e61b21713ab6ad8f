"""Memory-budget sizing (sdk.sizing): parsing, the largest tile that fits (hand-computed), the Segmenter's
default tile from the budget, and a tile chosen for a budget really staying within it (measured in a
fresh process), plus the block plan's partition of the output."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TESTS_DIR, subprocess_env
from onnx_fixtures import make_model
from sdk import Segmenter, sizing
from sdk.distributed.blocks import plan_blocks, tiles_per_block
from sdk.errors import InvalidInputError
from sdk.model_metadata import ModelMetadata
from sdk.tiling import plan_tiles



@pytest.mark.parametrize("text, expected", [
    ("1.5GB", 1_500_000_000), ("512MiB", 512 * 2**20), ("800m", 800_000_000), ("4096", 4096), (" 2 gib ", 2 * 2**30),
    (1234, 1234),
])
def test_parse_bytes(text, expected):
    assert sizing.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1GB", "0", "1.5 parsecs", ""])
def test_parse_bytes_rejects_what_is_not_a_size(text):
    with pytest.raises(InvalidInputError, match="memory size"):
        sizing.parse_bytes(text)


def _rule(multiple=16, offset=0, minimum=16):
    return ModelMetadata(spatial_dims=2, in_channels=1, class_names=("a", "b"), padding="same",
                         input_size_multiple=multiple, input_size_offset=offset, min_input_size=minimum)


def test_largest_tile_by_hand():
    rule = _rule()
    assert sizing.ARENA_HEADROOM == 2.0  # ORT's arena may hold twice the measured memory: half the budget
    # 200 MB at 400 B/px: sqrt(250000) = 500 px, rounded down to a multiple of 16
    assert sizing.largest_tile(rule, 400.0, 200_000_000, spatial_dims=2) == 496
    # a batch of 4 tiles shares the budget: 250 px, but never below the 256-px floor
    assert sizing.largest_tile(rule, 400.0, 200_000_000, spatial_dims=2, batch_size=4) == 256
    # an accepted size is kept as it is: 1024^2 * 100 B exactly
    assert sizing.largest_tile(rule, 100.0, 2 * 1024**2 * 100, spatial_dims=2) == 1024
    # valid-padding rule (offset 4 mod 16): 68 px of 3D budget -> 68 (= 4 * 16 + 4); 67 px -> 52
    assert sizing.largest_tile(_rule(16, 4, 20), 1000.0, 2 * 68**3 * 1000, spatial_dims=3) == 68
    assert sizing.largest_tile(_rule(16, 4, 20), 1000.0, 2 * 67**3 * 1000, spatial_dims=3) == 52


def test_default_tile_follows_the_budget_variable(monkeypatch, tmp_path):
    model = tmp_path / "same.onnx"  # a file: its measured tile memory is kept for the process
    model.write_bytes(make_model("same", seed=1, metadata=dict(tile_size=(32, 32), tile_overlap=0.25, blend="none"))[0])
    per_pixel = sizing.tile_bytes_per_pixel(Segmenter(str(model), device="cpu")._runtime)
    tiles = []
    for side in (300, 600):  # budgets that hold tiles of about these sides (above the 256-px floor)
        budget = math.ceil(side * side * per_pixel * sizing.ARENA_HEADROOM)  # int() could fall a byte short of side²
        monkeypatch.setenv(sizing.BUDGET_VARIABLE, str(budget))
        seg = Segmenter(str(model), device="cpu")
        expected = sizing.largest_tile(seg.metadata, per_pixel, budget, spatial_dims=2)
        assert seg.tile == (expected, expected) and expected * expected * per_pixel * sizing.ARENA_HEADROOM <= budget
        assert expected > side - seg.metadata.input_size_multiple  # the largest that fits, not merely one that does
        # the halo stays 8 px (a quarter of the model's 32-px tile) at the larger tile
        assert seg.overlap * expected == pytest.approx(8)
        tiles.append(expected)
    assert tiles[1] > tiles[0]
    # blending keeps the model's tile: its result depends on it
    assert Segmenter(str(model), device="cpu", blend="gaussian").tile == (32, 32)


_PEAK = """
import json, sys, numpy as np
from pathlib import Path
def peak():
    return int([l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0].split()[1]) * 1024
from sdk import Segmenter
seg = Segmenter(None, device='cpu', threads=1)
side = seg.tile[0]
image = (np.random.default_rng(0).random((side, side)) * 255).astype(np.uint8)
seg.predict(image[:16, :16])
before = peak()
seg.predict(image)
print(json.dumps({"tile": side, "added": peak() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_a_tile_chosen_for_a_budget_stays_within_it():
    budget = 96 * 2**20
    env = subprocess_env(UNET_SDK_MEMORY_BUDGET=str(budget))
    out = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, cwd=TESTS_DIR, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 256 <= result["tile"] < 1024
    # the whole image is one tile: its working memory plus the image's own buffers (input, float copies,
    # probabilities, labels: < 40 B/px) fit the budget
    assert result["added"] <= budget + 40 * result["tile"] ** 2


@pytest.mark.parametrize("merge", ["none", "gaussian"])
def test_blocks_partition_the_output_and_run_every_tile_they_need(merge):
    rule = _rule(2, 0, 8)
    plan = plan_tiles((300, 170), rule, tile=64, overlap=0.25, merge=merge)
    blocks = plan_blocks(plan, tiles_per_block(plan, 90 * 90))
    covered = np.zeros(plan.shape, np.int32)
    for block in blocks:
        covered[block.window] += 1
        for tile in block.tiles:  # every tile a block runs contributes to it ...
            reach = tile.keep if merge == "none" else tuple(
                slice(s, min(s + n, a.size)) for s, n, a in zip(tile.out_start, plan.output_shape, plan.axes))
            assert all(max(r.start, w.start) < min(r.stop, w.stop) for r, w in zip(reach, block.window))
        # ... and every tile contributing to it is run, in the plan's order
        needed = [t for t in plan if all(
            max((t.keep[d].start if merge == "none" else t.out_start[d]), block.window[d].start)
            < min((t.keep[d].stop if merge == "none" else t.out_start[d] + plan.output_shape[d]), block.window[d].stop)
            for d in range(2))]
        assert list(block.tiles) == needed
    assert (covered == 1).all()
    if merge == "none":  # overlap-tile: each tile runs in exactly one block
        assert sum(len(b.tiles) for b in blocks) == len(plan)
        for axis in blocks.axes:  # and the blocks are as even as the grouping allows (load balance)
            counts = [len(t) for t in axis.tiles]
            assert max(counts) - min(counts) <= 1 and max(counts) <= tiles_per_block(plan, 90 * 90)[0]
