"""Losses: unsupervised fusion loss (stage 1), and task-side terms (RSC, distillation).

Fusion loss (stage 1, no labels): ``w_int * L1(F, max(IR, Y)) + w_grad * L1(|grad F|, max(|grad IR|, |grad Y|))``
with Sobel L1 gradient magnitudes (:func:`ivif_fusion.ops.sobel_l1`). Defaults 0.2 / 1.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops import check_shape, sobel_l1


def fusion_loss(fused: torch.Tensor, ir: torch.Tensor, y: torch.Tensor, w_int: float = 0.2,
                w_grad: float = 1.0) -> torch.Tensor:
    """Intensity + gradient fusion loss on (N, 1, H, W) tensors in 0..1. Returns a scalar."""
    for t, n in ((fused, "fused"), (ir, "ir"), (y, "y")):
        check_shape(t, 4, f"fusion_loss {n}", 1)
    if not (fused.shape == ir.shape == y.shape):
        raise ValueError(f"fusion_loss: shapes differ {tuple(fused.shape)}, {tuple(ir.shape)}, {tuple(y.shape)}")
    l_int = F.l1_loss(fused, torch.maximum(ir, y))
    l_grad = F.l1_loss(sobel_l1(fused), torch.maximum(sobel_l1(ir), sobel_l1(y)))
    return w_int * l_int + w_grad * l_grad


def fusion_loss_terms(fused: torch.Tensor, ir: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two unweighted terms, for logging."""
    return {"intensity": F.l1_loss(fused, torch.maximum(ir, y)),
            "gradient": F.l1_loss(sobel_l1(fused), torch.maximum(sobel_l1(ir), sobel_l1(y)))}
