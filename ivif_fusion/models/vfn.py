"""VFN: the light visible-infrared fusion backbone.

Structure (encode -> fuse -> decode), following the CLDyN seed:

- encoder per modality: conv 1->4, conv 4->8, then ``depth`` dilated dense residual blocks;
- gradient-attention fusion on the 16-channel concatenation: the Sobel magnitude of the
  features drives a channel attention (avg + max pooling through a shared MLP) and a spatial
  attention (7x7 conv over channel mean/max); their sum through a sigmoid reweights the
  features, followed by a 3x3 conv;
- decoder: conv 16->8, ``depth`` blocks, conv 8->4 (the "last shared feature map" that VIFA
  heads read), conv 4->1 and tanh rescaled to 0..1.

Inputs: thermal (N, 1, H, W) and visible luminance Y (N, 1, H, W), float32 in 0..1.
Output: fused Y (N, 1, H, W) in 0..1. Any H, W works (all convs are padded, stride 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..ops import check_shape, sobel_l1


@dataclass(frozen=True)
class VFNConfig:
    depth: int = 2            # dilated dense residual blocks per encoder and in the decoder
    width: int = 8            # encoder output channels per modality
    growth: int = 8           # channels added by each layer inside a dense block
    dilations: tuple = (1, 2, 3)
    reduction: int = 4        # channel-attention MLP reduction

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VFNConfig":
        d = dict(d)
        if "dilations" in d:
            d["dilations"] = tuple(d["dilations"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown VFN config keys: {sorted(unknown)}")
        return cls(**d)


def _conv(cin: int, cout: int, k: int = 3, d: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d)


class DilatedDenseBlock(nn.Module):
    """Dense block of dilated 3x3 convs (each sees all previous outputs), 1x1 fuse, residual."""

    def __init__(self, ch: int, growth: int, dilations: tuple) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_conv(ch + i * growth, growth, 3, d) for i, d in enumerate(dilations))
        self.fuse = nn.Conv2d(ch + len(dilations) * growth, ch, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.layers:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + self.fuse(torch.cat(feats, 1))


class Encoder(nn.Module):
    def __init__(self, cfg: VFNConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(1, cfg.width // 2), nn.LeakyReLU(0.2), _conv(cfg.width // 2, cfg.width),
                                  nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*[DilatedDenseBlock(cfg.width, cfg.growth, cfg.dilations) for _ in range(cfg.depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class GradientAttentionFusion(nn.Module):
    """Reweights concatenated features by attention computed from their gradient magnitude."""

    def __init__(self, ch: int, reduction: int) -> None:
        super().__init__()
        hidden = max(ch // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(ch, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, ch, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.out = _conv(ch, ch)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = sobel_l1(x)
        ca = self.mlp(g.mean((2, 3), keepdim=True)) + self.mlp(g.amax((2, 3), keepdim=True))
        sa = self.spatial(torch.cat([g.mean(1, keepdim=True), g.amax(1, keepdim=True)], 1))
        w = torch.sigmoid(ca + sa)
        return self.act(self.out(x * w + x))


class Decoder(nn.Module):
    def __init__(self, cfg: VFNConfig) -> None:
        super().__init__()
        w = cfg.width
        self.inp = nn.Sequential(_conv(2 * w, w), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*[DilatedDenseBlock(w, cfg.growth, cfg.dilations) for _ in range(cfg.depth)])
        self.to_shared = nn.Sequential(_conv(w, w // 2), nn.LeakyReLU(0.2))
        self.head = _conv(w // 2, 1)  # the generic head; VIFA adds one such conv per task

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Last shared feature map (N, width/2, H, W), input of every head."""
        return self.to_shared(self.blocks(self.inp(z)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_unit(self.head(self.features(z)))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """tanh rescaled to 0..1: the output activation of every head."""
    return (torch.tanh(x) + 1.0) * 0.5


class VFN(nn.Module):
    """The fusion backbone. ``forward(ir, y) -> fused Y``; also ``encode``/``fuse``/``decode``."""

    def __init__(self, cfg: VFNConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VFNConfig()
        self.enc_ir = Encoder(self.cfg)
        self.enc_vi = Encoder(self.cfg)
        self.fusion = GradientAttentionFusion(2 * self.cfg.width, self.cfg.reduction)
        self.decoder = Decoder(self.cfg)

    @property
    def shared_channels(self) -> int:
        """Channels of the last shared map (``width / 2``), the input of every head."""
        return self.cfg.width // 2

    def encode(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality features (N, width, H, W) each; the RSC module customizes these."""
        check_shape(thermal, 4, "VFN ir", 1)
        check_shape(y, 4, "VFN y", 1)
        if thermal.shape != y.shape:
            raise ValueError(f"VFN: thermal {tuple(thermal.shape)} and luminance {tuple(y.shape)} differ")
        return self.enc_ir(thermal), self.enc_vi(y)

    def fuse(self, f_ir: torch.Tensor, f_vi: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([f_ir, f_vi], 1))

    def shared_features(self, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Backbone up to the last shared map: what VIFA heads consume (run once per pair)."""
        return self.decoder.features(self.fuse(*self.encode(thermal, y)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(self.fuse(*self.encode(thermal, y)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vfn(*, depth: int = 2) -> VFN:
    """Default VFN (depth 2)."""
    return VFN(VFNConfig(depth=depth))
