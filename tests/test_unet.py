"""U-Net shapes and size rules (2D/3D, same/valid), checked against real forward passes and the paper."""
import pytest

torch = pytest.importorskip("torch")

from export.unet import UNet  # noqa: E402


def _forward_shape(model, spatial):
    with torch.no_grad():
        return tuple(model.eval()(torch.zeros((1, model.config["in_channels"], *spatial))).shape)


def test_paper_valid_unet_572_to_388():
    # Ronneberger et al. 2015, Fig. 1: a 572x572 input tile gives a 388x388 output map (margin 92).
    model = UNet(depth=4, base_features=1, padding="valid", batch_norm=False)
    rules = model.size_rules()
    assert (rules.output_margin, rules.input_size_multiple, rules.input_size_offset) == (92, 16, 572 % 16)
    assert _forward_shape(model, (572, 572)) == (1, 2, 388, 388)


@pytest.mark.parametrize(
    "spatial_dims,padding,depth",
    [(2, "same", 3), (2, "valid", 2), (2, "valid", 3), (3, "same", 2), (3, "valid", 1)],
)
def test_output_shapes_match_size_rules(spatial_dims, padding, depth):
    model = UNet(spatial_dims=spatial_dims, depth=depth, base_features=2, padding=padding, num_classes=3)
    rules = model.size_rules()
    m = rules.input_size_multiple
    smallest = rules.min_input_size
    # anisotropic sizes: smallest accepted, and a few multiples above it on different axes
    sizes = [smallest + k * m for k in range(spatial_dims)][::-1]
    shape = _forward_shape(model, sizes)
    assert shape == (1, 3, *[rules.output_size(s) for s in sizes])
    assert all(s > 0 for s in shape)
    if padding == "same":
        assert rules.output_margin == 0 and shape[2:] == tuple(sizes)
    # one step below the smallest accepted size is refused with a clear message
    with pytest.raises(ValueError, match="not accepted"):
        _forward_shape(model, [smallest - m] + sizes[1:])


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_accepted_sizes_are_exactly_those_that_run(padding):
    """Every size the rules accept runs; every refused size would misalign pooling/cropping."""
    model = UNet(depth=2, base_features=1, padding=padding, batch_norm=False)
    rules = model.size_rules()
    for n in range(rules.min_input_size - 8, rules.min_input_size + 13):
        if n < 1:
            continue
        if rules.accepts(n):
            assert _forward_shape(model, (n, n + rules.input_size_multiple))[2] == n - 2 * rules.output_margin
        else:
            with pytest.raises(ValueError, match="not accepted"):
                _forward_shape(model, (n, n))


def test_odd_sizes_refused_for_same_padding():
    model = UNet(depth=1, base_features=2)
    with pytest.raises(ValueError, match=r"\[17\]"):
        _forward_shape(model, (16, 17))


def test_wrong_channels_and_ndim():
    model = UNet(in_channels=2, depth=1, base_features=2)
    with pytest.raises(ValueError, match="2 input channel"):
        model(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="4-d input"):
        model(torch.zeros(1, 2, 16, 16, 16))


def test_default_model_size_and_state_dict_round_trip():
    model = UNet()
    # base 16, depth 4: 1.9 M parameters (issue 3), small enough to ship (< 10 MB in fp32)
    assert 1.85e6 < sum(p.numel() for p in model.parameters()) < 1.95e6
    clone = UNet()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), clone.eval()(x))


def test_bad_options():
    with pytest.raises(ValueError):
        UNet(spatial_dims=1)
    with pytest.raises(ValueError):
        UNet(padding="reflect")
    with pytest.raises(ValueError):
        UNet(dropout=1.0)
