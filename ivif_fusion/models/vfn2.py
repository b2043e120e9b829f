"""VFN2: a fusion backbone that does its heavy work at reduced resolution.

Why: the VFN spends its time moving many thin (4-16 channel) full-resolution tensors through
dense-block concatenations; on a CPU (and a Jetson) that is memory-bound, not compute-bound.
VFN2 keeps only a few thin maps at full resolution and puts its capacity where it is cheap per
pixel: wide convolutions on a grid ``stride`` times smaller in each direction
(docs/backbone_v2.md has the measurements). The defaults are the largest candidate that stays
under half the SeAFusion twin's ONNX Runtime time (benchmarks/backbone_v2_candidates.md).

Structure (inputs thermal and visible luminance Y, (N, 1, H, W) in 0..1, any H, W):

- **context path**: a strided ``stride x stride`` conv over [thermal, Y] (the same as a pixel
  unshuffle followed by a 1x1 conv) to ``channels`` maps; ``depth`` residual blocks (two 3x3
  convs, or with ``block='separable'`` a 1x1 expansion, a depthwise 3x3 and a 1x1 projection);
  a 3x3 conv to ``detail * stride**2`` maps and a pixel shuffle back to full resolution. The
  input is padded (replicate) to a multiple of ``stride`` and the result cropped back.
- **detail path**, full resolution: a 3x3 conv over [thermal, Y, |grad thermal|, |grad Y|]
  (Sobel L1 magnitudes, :func:`ivif_fusion.ops.sobel_l1`) to ``detail`` maps, then
  ``detail_depth - 1`` more 3x3 convs ``detail -> detail`` (LeakyReLU between).
- **decoder**: ``h = LeakyReLU(context + detail)``; a 1x1 conv of ``h`` gives a per-pixel
  weight ``w = sigmoid(.)`` and the base image ``b = w * thermal + (1 - w) * Y`` (a soft
  max-select); the last shared map is ``[h, p]`` with ``p = logit(b) / 2``, the base image in
  the pre-activation space of the heads. Every head (the generic one here, VIFA's per task) is
  a 3x3 conv on that map followed by :func:`to_unit` (``(tanh + 1) / 2``), and
  ``to_unit(p) = b``: a head whose weights are 1 at the centre of ``p`` and 0 elsewhere outputs
  the base image exactly, so the features only learn a residual (contrast, detail) on top of
  a learned max-select. The generic head starts that way, and every residual block starts as
  the identity (a learned gain at zero, "ReZero"), so an untrained VFN2 outputs the mean of
  the two images and training starts from a stable point.

The modalities are mixed at the input, so there are no per-modality encoder features; RSC
customizes the context path's wide low-resolution map ``z`` instead (:meth:`VFN2.encode_context`
and :meth:`VFN2.decode_context` split the backbone there; :mod:`ivif_fusion.models.rsc_context`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..ops import check_shape, sobel_l1
from .vfn import to_unit

ARCH = "vfn2"
BLOCKS = ("plain", "separable")
# The base image is clamped to [eps, 1 - eps] before its logit: this bounds the prior to +-2.3 and the
# gradient factor 1 / (b (1 - b)) of the logit to 100 (dark night scenes sit near 0).
LOGIT_EPS = 1e-2


@dataclass(frozen=True)
class VFN2Config:
    stride: int = 4          # context path resolution: 1/stride of the input in each direction
    channels: int = 96       # context path width
    depth: int = 8           # residual blocks in the context path
    detail: int = 16         # full-resolution channels (detail path and shared map, plus the base image)
    detail_depth: int = 2    # 3x3 convs in the full-resolution detail path
    block: str = "plain"     # residual block: 'plain' (two 3x3 convs) or 'separable' (1x1, depthwise 3x3, 1x1)
    expand: int = 2          # channel expansion inside a separable block

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"VFN2 block must be one of {BLOCKS}, got {self.block!r}")
        if min(self.stride, self.channels, self.detail, self.detail_depth, self.expand) < 1 or self.depth < 0:
            raise ValueError(f"VFN2 sizes must be positive (depth >= 0): {self}")

    def to_dict(self) -> dict:
        return {"arch": ARCH, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "VFN2Config":
        d = dict(d)
        arch = d.pop("arch", ARCH)
        if arch != ARCH:
            raise ValueError(f"not a {ARCH} config (arch {arch!r})")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown VFN2 config keys: {sorted(unknown)}")
        return cls(**d)


class ResidualBlock(nn.Module):
    """``x + gain * f(x)``; ``f`` is conv3x3-LeakyReLU-conv3x3 (plain) or 1x1-dw3x3-1x1 (separable)."""

    def __init__(self, ch: int, block: str, expand: int) -> None:
        super().__init__()
        if block == "plain":
            self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(ch, ch, 3, padding=1))
        else:
            hid = ch * expand
            self.body = nn.Sequential(nn.Conv2d(ch, hid, 1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(hid, hid, 3, padding=1, groups=hid), nn.LeakyReLU(0.2),
                                      nn.Conv2d(hid, ch, 1))
        # ReZero: the branch enters through a learned gain that starts at 0, so the stack starts as the
        # identity and grows at the pace of one scalar per block. Without it Adam moves every weight of
        # every branch at once and the unnormalised stack amplifies itself within a few steps.
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gain * self.body(x)


class ContextPath(nn.Module):
    """[thermal, Y] at 1/stride resolution, wide residual blocks, pixel shuffle back to (N, detail, H, W)."""

    def __init__(self, cfg: VFN2Config) -> None:
        super().__init__()
        self.stride = cfg.stride
        self.stem = nn.Conv2d(2, cfg.channels, cfg.stride, stride=cfg.stride)
        self.act = nn.LeakyReLU(0.2)
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.channels, cfg.block, cfg.expand) for _ in range(cfg.depth)])
        self.up = nn.Conv2d(cfg.channels, cfg.detail * cfg.stride ** 2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(cfg.stride)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[thermal, Y] (N, 2, H, W) -> the wide low-resolution map z (N, channels, ceil(H/s), ceil(W/s))."""
        h, w = x.shape[-2:]
        s = self.stride
        # pad right/bottom to a multiple of the stride (replicate: no artificial edge), crop after
        x = F.pad(x, (0, (s - w % s) % s, 0, (s - h % s) % s), mode="replicate")
        return self.blocks(self.act(self.stem(x)))

    def decode(self, z: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """z -> (N, detail, h, w): the 3x3 conv ``up``, the pixel shuffle and the crop back to the input size."""
        return self.unfold(self.up(z), h, w)

    def unfold(self, u: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``up``'s output (N, detail * stride**2, h / s, w / s) -> (N, detail, h, w): pixel shuffle and crop."""
        return self.shuffle(u)[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), *x.shape[-2:])


class FusionDecoder(nn.Module):
    """Context + detail -> the last shared map [h, logit(base) / 2]; ``head`` is the generic head."""

    def __init__(self, cfg: VFN2Config) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.weight = nn.Conv2d(cfg.detail, 1, 1)
        self.head = nn.Conv2d(cfg.detail + 1, 1, 3, padding=1)
        with torch.no_grad():  # start as w = 0.5 (the mean) and generic output = the base image exactly
            self.weight.weight.zero_()
            self.weight.bias.zero_()
            self.head.weight.zero_()
            self.head.weight[0, -1, 1, 1] = 1.0
            self.head.bias.zero_()

    def features(self, context: torch.Tensor, detail: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.act(context + detail)
        w = torch.sigmoid(self.weight(h))
        base = (y + w * (thermal - y)).clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
        return torch.cat([h, 0.5 * torch.log(base / (1.0 - base))], 1)

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        return to_unit(self.head(shared))


class VFN2(nn.Module):
    """``forward(ir, y) -> fused Y`` and ``shared_features(ir, y)``, like :class:`~ivif_fusion.models.vfn.VFN`."""

    def __init__(self, cfg: VFN2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VFN2Config()
        self.context = ContextPath(self.cfg)
        k = self.cfg.detail
        layers: list[nn.Module] = [nn.Conv2d(4, k, 3, padding=1)]
        for _ in range(self.cfg.detail_depth - 1):
            layers += [nn.LeakyReLU(0.2), nn.Conv2d(k, k, 3, padding=1)]
        self.detail = nn.Sequential(*layers)
        self.decoder = FusionDecoder(self.cfg)

    @property
    def shared_channels(self) -> int:
        """Channels of the last shared map: the detail maps and the base image."""
        return self.cfg.detail + 1

    def shared_features(self, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Backbone up to the last shared map (N, detail + 1, H, W): what every head consumes."""
        return self.decode_context(*self.encode_context(thermal, y), thermal, y)

    def encode_context(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The task-independent part: (z, detail), z the context path's wide low-resolution map
        (after the residual blocks, before ``up``) and detail the full-resolution detail maps.
        RSC customizes z (:mod:`ivif_fusion.models.rsc_context`)."""
        check_shape(thermal, 4, "VFN2 ir", 1)
        check_shape(y, 4, "VFN2 y", 1)
        if thermal.shape != y.shape:
            raise ValueError(f"VFN2: thermal {tuple(thermal.shape)} and luminance {tuple(y.shape)} differ")
        x = torch.cat([thermal, y], 1)
        return self.context.encode(x), self.detail(torch.cat([x, sobel_l1(x)], 1))

    def decode_context(self, z: torch.Tensor, detail: torch.Tensor, thermal: torch.Tensor,
                       y: torch.Tensor) -> torch.Tensor:
        """(z, detail) -> the last shared map: the context path's upsampling, then the decoder's features."""
        return self.finish_context(self.context.up(z), detail, thermal, y)

    def finish_context(self, u: torch.Tensor, detail: torch.Tensor, thermal: torch.Tensor,
                       y: torch.Tensor) -> torch.Tensor:
        """``up(z)`` (before the pixel shuffle) and detail -> the last shared map."""
        return self.decoder.features(self.context.unfold(u, *thermal.shape[-2:]), detail, thermal, y)

    def forward(self, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.shared_features(thermal, y))
