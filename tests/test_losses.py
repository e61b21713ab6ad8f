"""The U-Net paper's weight map and the weighted cross-entropy, against hand-computed values."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.losses import (  # noqa: E402
    UNetLoss,
    border_weight_map,
    class_balance_weights,
    soft_dice_loss,
    unet_weight_map,
    weighted_cross_entropy,
)


def _two_walls():
    """5x7 image: object 1 fills column 0, object 2 fills column 6, columns 1..5 are background."""
    instances = np.zeros((5, 7), dtype=np.int32)
    instances[:, 0] = 1
    instances[:, 6] = 2
    return instances


def test_weight_map_hand_computed():
    instances = _two_walls()
    classes = (instances > 0).astype(np.int64)
    w = unet_weight_map(classes, instances, num_classes=2)
    # class balance: 35 pixels, 10 objects, 25 background: w_c = 35 / (2 * N_k)
    wc_fg, wc_bg = 35 / 20, 35 / 50
    # background column x (1..5): d1 = min(x, 6 - x), d2 = max(x, 6 - x), so d1 + d2 = 6 everywhere
    border = 10 * math.exp(-(6**2) / (2 * 5**2))
    for y in range(5):
        assert w[y, 0] == pytest.approx(wc_fg) and w[y, 6] == pytest.approx(wc_fg)
        for x in range(1, 6):
            assert w[y, x] == pytest.approx(wc_bg + border, rel=1e-6)


def test_border_term_with_diagonal_distances():
    # two single-pixel objects at (0, 0) and (3, 4); the pixel (0, 4): d1 = 3, d2 = 4 -> (d1 + d2) = 7
    instances = np.zeros((4, 5), dtype=np.int32)
    instances[0, 0], instances[3, 4] = 1, 2
    w = border_weight_map(instances, w0=10, sigma=5)
    assert w[0, 4] == pytest.approx(10 * math.exp(-49 / 50), rel=1e-6)
    # the pixel (2, 2): d1 = sqrt(5) (to (3,4)), d2 = sqrt(8) (to (0,0))
    assert w[2, 2] == pytest.approx(10 * math.exp(-((5**0.5 + 8**0.5) ** 2) / 50), rel=1e-6)
    assert w[0, 0] == 0 and w[3, 4] == 0  # objects carry no border term


def test_border_term_needs_two_objects_and_cutoff():
    one = np.zeros((6, 6), dtype=np.int32)
    one[2, 2] = 1
    assert not border_weight_map(one).any()  # d2 = inf everywhere
    far = np.zeros((1, 80), dtype=np.int32)
    far[0, 0], far[0, 79] = 1, 2
    # d1 + d2 = 79 at every background pixel, beyond the 5 sigma cutoff: exactly 0, true value < 1e-50
    assert not border_weight_map(far).any()


def test_class_balance_weights_missing_class():
    classes = np.array([[0, 0, 0, 2]])
    w = class_balance_weights(classes, 3)
    # two classes present: N / (K N_k) = 4 / (2 * 3) and 4 / (2 * 1)
    np.testing.assert_allclose(w, [[4 / 6, 4 / 6, 4 / 6, 2.0]])


def test_weighted_cross_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    target = rng.integers(0, 3, (2, 4, 5))
    weights = rng.uniform(0.5, 3, (2, 4, 5)).astype(np.float32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    picked = np.take_along_axis(log_softmax, target[:, None], axis=1)[:, 0]
    expected = float(np.mean(-picked * weights))
    got = weighted_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), torch.from_numpy(weights))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    unweighted = weighted_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), None)
    assert float(unweighted) == pytest.approx(float(np.mean(-picked)), rel=1e-5)


def test_dice_loss_perfect_and_opposite():
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = torch.stack([(target == 0).float(), (target == 1).float()], dim=1) * 50
    assert float(soft_dice_loss(perfect, target, eps=0.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(-perfect, target, eps=0.0)) == pytest.approx(1.0, abs=1e-6)
    loss = UNetLoss(dice_weight=0.5)
    ce = weighted_cross_entropy(perfect * 0.01, target, None)
    assert float(loss(perfect * 0.01, target)) == pytest.approx(
        float(ce) + 0.5 * float(soft_dice_loss(perfect * 0.01, target)), rel=1e-6
    )
    with pytest.raises(ValueError):
        UNetLoss(dice_weight=-1)
