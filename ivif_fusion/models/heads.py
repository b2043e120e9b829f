"""Backbone + per-task one-layer heads as one module (the deployment graph).

Every head is a single 3x3 conv on the backbone's last shared feature map
(``backbone.shared_features``, ``backbone.shared_channels`` channels) followed by the 0..1 tanh
output, exactly like the backbone's own generic head (the backbone's ``decoder.head``). The
backbone is any registered architecture (:mod:`ivif_fusion.models.backbones`: VFN, VFN2).
VIFA trains one such head per task. ``forward`` runs the backbone once and every head on its
output, returning one fused Y per head in ``head_names`` order (one ONNX output per head).
"""

from __future__ import annotations

import torch
from torch import nn

from .vfn import to_unit

GENERIC = "generic"


def make_head(in_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, 1, 3, padding=1)


class MultiHeadFusion(nn.Module):
    """Shared backbone, one output per head. ``heads`` excludes the generic head, which is built in."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module] | None = None,
                 head_names: list[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads or {})
        if GENERIC in self.heads:
            raise ValueError(f"'{GENERIC}' is the backbone's own head; do not pass it in heads")
        self.head_names = list(head_names) if head_names is not None else [GENERIC, *self.heads.keys()]
        unknown = [h for h in self.head_names if h != GENERIC and h not in self.heads]
        if unknown:
            raise ValueError(f"unknown head(s) {unknown}; available: {[GENERIC, *self.heads]}")

    def head(self, name: str, shared: torch.Tensor) -> torch.Tensor:
        conv = self.backbone.decoder.head if name == GENERIC else self.heads[name]
        return to_unit(conv(shared))

    def forward(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shared = self.backbone.shared_features(thermal, y)
        return tuple(self.head(n, shared) for n in self.head_names)
