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


# ---------------------------------------------------------------------- RSC: task-side terms


def reward_punishment(task_loss: torch.Tensor, reference: torch.Tensor | float, alpha: float = 5.0) -> torch.Tensor:
    """``alpha * ReLU(L_t - L_ref)``: punishes a customized image whose task loss exceeds the reference.

    ``reference`` is detached (a target, not a path for gradients). The RSC trainer uses the task
    loss of the *generic* fused image on the same batch by default (customization must not hurt
    the task; same images, so the comparison is not batch noise), or the previous step's loss
    (``reference: previous`` in config/train_rsc.yaml). The gradient is ``alpha * dL_t`` while the
    customized loss is worse than the reference and zero otherwise; summed with ``L_t`` it
    weighs the harmed batches (1 + alpha) times as much.
    """
    ref = reference.detach() if isinstance(reference, torch.Tensor) else torch.tensor(float(reference))
    return alpha * F.relu(task_loss - ref.to(task_loss))


def rsc_task_loss(task_loss: torch.Tensor, reference: torch.Tensor | float | None, fused: torch.Tensor,
                  ir: torch.Tensor, y: torch.Tensor, *, alpha: float = 5.0, w_fid: float = 1.0,
                  w_int: float = 0.2, w_grad: float = 1.0) -> dict[str, torch.Tensor]:
    """One task's RSC objective and its parts.

    ``total = L_t + alpha * ReLU(L_t - L_ref) + w_fid * fusion_loss(fused, ir, y)``; the fidelity
    term (the stage-1 fusion loss) keeps the customized Y an image of both sources. Without a
    reference (first step of ``previous`` mode) the reward/punishment term is 0.
    """
    rp = reward_punishment(task_loss, reference, alpha) if reference is not None else task_loss.new_zeros(())
    fid = fusion_loss(fused, ir, y, w_int, w_grad)
    return {"total": task_loss + rp + w_fid * fid, "task": task_loss, "reward_punishment": rp, "fidelity": fid}
