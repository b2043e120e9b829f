"""A SeAFusion-architecture twin: the timing reference for the VFN backbone.

Built from the architecture described in Tang et al., "Image fusion in the loop of high-level
vision tasks: A semantic-aware real-time infrared and visible image fusion network",
Information Fusion 2022. It exists to be timed next to the backbone in the same run
(``ivif bench fusion``); its weights are random and it is never trained here.

Structure, everything at full resolution (3x3 convs padded, stride 1):

- per modality: 3x3 conv 1->16 + LeakyReLU 0.2, then two residual gradient dense blocks
  (:class:`GradientDenseBlock`) 16->32 and 32->48;
- the two 48-channel maps concatenated (96), then 3x3 convs 96->64, 64->32, 32->16 each with
  LeakyReLU 0.2, and 3x3 16->1 with tanh/2 + 0.5.

The gradient branch uses this package's Sobel (:func:`ivif_fusion.ops.sobel_l1`: fixed
kernels, replicate padding). The paper's implementation stores its depthwise Sobel kernels as
conv weights (2 x 9 x c values per block, initialised to Sobel), so its parameter count includes
them: :func:`paper_parameter_count` adds them back (166,657; ``parameters()`` holds 164,929).
The cost is the same either way: 166,000 MAC per pixel, 51.0 GMAC = 102 GFLOP per 640x480 frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..ops import check_shape, sobel_l1

ENCODER_CHANNELS = (16, 32, 48)
DECODER_CHANNELS = (64, 32, 16)
MAC_PER_PIXEL = 166_000  # every conv including the Sobel ones; test/test_seafusion_twin.py counts it


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class GradientDenseBlock(nn.Module):
    """Residual gradient dense block, ``c`` -> ``out`` channels.

    Dense branch: 3x3 convs c->c and 2c->c (LeakyReLU 0.2), each seeing the input and the
    outputs before it; input and both outputs (3c channels) through a 1x1 conv 3c->out.
    Gradient branch: |Sobel x| + |Sobel y| of the c input channels, then a 1x1 conv c->out.
    The two branches are summed, then LeakyReLU 0.1.
    """

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.channels = c
        self.dense1 = _conv3(c, c)
        self.dense2 = _conv3(2 * c, c)
        self.dense_out = nn.Conv2d(3 * c, out, 1)
        self.gradient_out = nn.Conv2d(c, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = F.leaky_relu(self.dense1(x), 0.2)
        d2 = F.leaky_relu(self.dense2(torch.cat([x, d1], 1)), 0.2)
        dense = self.dense_out(torch.cat([x, d1, d2], 1))
        gradient = self.gradient_out(sobel_l1(x))
        return F.leaky_relu(dense + gradient, 0.1)


class _ModalityEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c0, c1, c2 = ENCODER_CHANNELS
        self.stem = _conv3(1, c0)
        self.block1 = GradientDenseBlock(c0, c1)
        self.block2 = GradientDenseBlock(c1, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(F.leaky_relu(self.stem(x), 0.2)))


class SeAFusionTwin(nn.Module):
    """``forward(ir, y) -> fused Y``: thermal and visible luminance (N, 1, H, W) in 0..1, like VFN."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_ir = _ModalityEncoder()
        self.enc_vi = _ModalityEncoder()
        widths = (2 * ENCODER_CHANNELS[-1], *DECODER_CHANNELS)
        self.decoder = nn.ModuleList(_conv3(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = _conv3(DECODER_CHANNELS[-1], 1)

    def forward(self, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_shape(thermal, 4, "SeAFusionTwin ir", 1)
        check_shape(y, 4, "SeAFusionTwin y", 1)
        z = torch.cat([self.enc_vi(y), self.enc_ir(thermal)], 1)
        for conv in self.decoder:
            z = F.leaky_relu(conv(z), 0.2)
        return torch.tanh(self.out(z)) / 2 + 0.5


def paper_parameter_count(model: SeAFusionTwin) -> int:
    """Parameters as the paper's implementation counts them: ours plus its stored Sobel kernels."""
    sobel = sum(2 * 9 * m.channels for m in model.modules() if isinstance(m, GradientDenseBlock))
    return sum(p.numel() for p in model.parameters()) + sobel
