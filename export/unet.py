"""The U-Net of Ronneberger et al. (2015) and its 3D form (Çiçek et al. 2016) in one class.

Contracting path: per level two 3x3(x3) convolutions + ReLU (optional batch norm), then 2x2(x2) max
pooling, feature maps doubling per level; a bottleneck (optional dropout at the end of the contracting
path, as in the paper); expanding path: 2x2(x2) transposed convolution halving the features,
concatenation with the (centre-cropped) skip connection, two convolutions; a 1x1(x1) head to
``num_classes`` logits.

``padding="valid"`` is the paper's unpadded network: every 3-wide convolution loses one voxel at each
border, so the output is smaller than the input by ``2 * output_margin`` per axis and only input sides
with ``(n - offset) % 2**depth == 0`` pool cleanly. :meth:`UNet.size_rules` derives those numbers by
walking the same layer arithmetic as :meth:`UNet.forward`; the tests check them against real outputs.

References:
    O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for Biomedical Image
    Segmentation. MICCAI 2015. arXiv:1505.04597.
    Ö. Çiçek et al. 3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation. MICCAI 2016.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PADDINGS = ("same", "valid")
_KERNEL = 3  # both convolutions of a block are 3-wide
_CONVS_PER_BLOCK = 2


@dataclass(frozen=True)
class SizeRules:
    """Which input sides a U-Net accepts and how much smaller its output is (per spatial axis).

    An input side ``n`` is accepted iff ``n >= min_input_size`` and
    ``(n - input_size_offset) % input_size_multiple == 0``; the output side is ``n - 2 * output_margin``.
    Field names match :class:`sdk.model_metadata.ModelMetadata`.
    """

    input_size_multiple: int
    input_size_offset: int
    min_input_size: int
    output_margin: int

    def accepts(self, n: int) -> bool:
        return n >= self.min_input_size and (n - self.input_size_offset) % self.input_size_multiple == 0

    def output_size(self, n: int) -> int:
        return n - 2 * self.output_margin


def _conv_block(spatial_dims: int, cin: int, cout: int, padding: str, batch_norm: bool) -> nn.Sequential:
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
    pad = _KERNEL // 2 if padding == "same" else 0
    layers: list[nn.Module] = []
    for i in range(_CONVS_PER_BLOCK):
        layers.append(conv(cin if i == 0 else cout, cout, _KERNEL, padding=pad, bias=not batch_norm))
        if batch_norm:
            layers.append(norm(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop the spatial axes of ``x`` to those of ``like``, centred (the paper's skip cropping)."""
    slices = [slice(None), slice(None)]
    for axis in range(2, x.dim()):
        start = (x.shape[axis] - like.shape[axis]) // 2
        slices.append(slice(start, start + like.shape[axis]))
    return x[tuple(slices)]


class UNet(nn.Module):
    """U-Net for 2D images (N, C, H, W) or 3D volumes (N, C, D, H, W); returns class logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_classes: output channels (logits; softmax over axis 1 gives class probabilities).
        depth: number of 2x pooling steps (the paper uses 4).
        base_features: feature maps of the first level (the paper uses 64); doubled per level.
        padding: ``"same"`` (output size = input size) or ``"valid"`` (the paper's unpadded convolutions).
        batch_norm: batch normalisation after every convolution (folds into the convolution on export).
        dropout: dropout probability at the end of the contracting path (0 disables it).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_features: int = 16,
        padding: str = "same",
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if in_channels < 1 or num_classes < 1 or base_features < 1:
            raise ValueError("in_channels, num_classes and base_features must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = dict(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            depth=depth,
            base_features=base_features,
            padding=padding,
            batch_norm=batch_norm,
            dropout=dropout,
        )
        self.spatial_dims = spatial_dims
        self.depth = depth
        self.padding = padding
        pool = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        up = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        head = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        widths = [base_features * 2**level for level in range(depth + 1)]

        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths[:-1]:
            self.down.append(_conv_block(spatial_dims, cin, width, padding, batch_norm))
            cin = width
        self.pool = pool(2)
        self.bottleneck = _conv_block(spatial_dims, cin, widths[-1], padding, batch_norm)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(up(widths[level + 1], widths[level], 2, stride=2))
            self.up_blocks.append(_conv_block(spatial_dims, 2 * widths[level], widths[level], padding, batch_norm))
        self.head = head(widths[0], num_classes, 1)
        self._size_rules = self._derive_size_rules()

    # -- size rules ----------------------------------------------------------------------------
    def _output_side(self, n: int) -> int | None:
        """Output side for input side ``n`` by the layer arithmetic of :meth:`forward`; None if refused."""
        loss = 0 if self.padding == "same" else _CONVS_PER_BLOCK * (_KERNEL - 1)
        side = n
        for _ in range(self.depth):
            side -= loss
            if side < 2 or side % 2:
                return None  # pooling would floor (and lose alignment with the skip) or empty
            side //= 2
        side -= loss
        if side < 1:
            return None
        for _ in range(self.depth):
            side = 2 * side - loss
            if side < 1:
                return None
        return side

    def size_rules(self) -> SizeRules:
        """Accepted input sides and output margin (see :class:`SizeRules`), for the model metadata."""
        return self._size_rules

    def _derive_size_rules(self) -> SizeRules:
        multiple = 2**self.depth
        accepted = [n for n in range(1, 64 * multiple + 200) if self._output_side(n) is not None]
        if not accepted:  # pragma: no cover - every depth >= 0 accepts some size
            raise ValueError("this U-Net accepts no input size")
        smallest = accepted[0]
        margin_twice = smallest - self._output_side(smallest)
        return SizeRules(
            input_size_multiple=multiple,
            input_size_offset=smallest % multiple,
            min_input_size=smallest,
            output_margin=margin_twice // 2,
        )

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` naming the problem if ``shape`` (N, C, *spatial) is not accepted."""
        expected_ndim = 2 + self.spatial_dims
        if len(shape) != expected_ndim:
            raise ValueError(f"expected a {expected_ndim}-d input (N, C, *spatial), got shape {tuple(shape)}")
        if shape[1] != self.config["in_channels"]:
            raise ValueError(f"expected {self.config['in_channels']} input channel(s), got {shape[1]}")
        rules = self._size_rules
        bad = [int(s) for s in shape[2:] if not rules.accepts(int(s))]
        if bad:
            raise ValueError(
                f"spatial size(s) {bad} not accepted: need n >= {rules.min_input_size} and "
                f"(n - {rules.input_size_offset}) % {rules.input_size_multiple} == 0"
            )

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.compiler.is_exporting() or torch.jit.is_tracing()):
            self.check_input_shape(tuple(x.shape))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
            x = up(x)
            if self.padding == "valid":
                skip = _center_crop(skip, x)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
