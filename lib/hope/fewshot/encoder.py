"""A small 2D convolutional encoder built from MONAI blocks; constructed from scratch, no downloaded weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn


class ConvEncoder(nn.Module):
    """Dense features at half resolution: ``(B, in_channels, H, W) -> (B, out_channels, H/2, W/2)``.

    A full-resolution stem, one strided convolution, then residual dilated blocks that widen the receptive field
    (to about 40 pixels with the defaults) without losing resolution, and a 1x1 projection with no activation, so
    features can be compared by cosine similarity. Instance norm keeps the encoder independent of batch make-up,
    which matters for episodes with a single support image.
    """

    output_stride = 2

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (24, 48),
        out_channels: int = 64,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        norm = ("instance", {"affine": True})

        def conv(c_in: int, c_out: int, **kwargs: int) -> Convolution:
            return Convolution(2, c_in, c_out, kernel_size=3, act="LEAKYRELU", norm=norm, **kwargs)

        self.stem = nn.Sequential(conv(in_channels, channels[0]), conv(channels[0], channels[0]))
        self.down = conv(channels[0], channels[1], strides=2)
        self.blocks = nn.ModuleList(conv(channels[1], channels[1], dilation=d) for d in dilations)
        self.head = Convolution(2, channels[1], out_channels, kernel_size=1, conv_only=True)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of images into a feature map at half resolution."""
        x = self.down(self.stem(x))
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)
