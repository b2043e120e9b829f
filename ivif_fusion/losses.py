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


# ---------------------------------------------------------------------- RSC: VIF guard


def _gauss_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    r = (size - 1) / 2.0
    t = torch.arange(size, dtype=like.dtype, device=like.device) - r
    k = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]


def vif_pair_t(ref: torch.Tensor, dist: torch.Tensor, sigma_nsq: float = 2.0) -> torch.Tensor:
    """Differentiable pixel-domain VIF per image, (N, 1, H, W) on the 0..255 scale -> (N,).

    The same computation as :func:`ivif_fusion.metrics.fusion.vif_pair` (4 scales, 'valid'
    Gaussian windows, the reference implementation's special cases as ``torch.where``), so a
    training term built on it moves the metric that is reported; test_rsc checks the two agree.
    """
    check_shape(ref, 4, "vif ref", 1)
    check_shape(dist, 4, "vif dist", 1)
    eps = 1e-10
    r, d = ref, dist
    num = ref.new_zeros(ref.shape[0])
    den = ref.new_zeros(ref.shape[0])
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        k = _gauss_window(n, n / 5.0, ref)
        if scale > 1:
            r = F.conv2d(r, k)[..., ::2, ::2]
            d = F.conv2d(d, k)[..., ::2, ::2]
        mr, md = F.conv2d(r, k), F.conv2d(d, k)
        srr = (F.conv2d(r * r, k) - mr * mr).clamp_min(0.0)
        sdd = (F.conv2d(d * d, k) - md * md).clamp_min(0.0)
        srd = F.conv2d(r * d, k) - mr * md
        g = srd / (srr + eps)
        sv = sdd - g * srd
        flat_r = srr < eps
        g = torch.where(flat_r, torch.zeros_like(g), g)
        sv = torch.where(flat_r, sdd, sv)
        srr = torch.where(flat_r, torch.zeros_like(srr), srr)
        flat_d = sdd < eps
        g = torch.where(flat_d, torch.zeros_like(g), g)
        sv = torch.where(flat_d, torch.zeros_like(sv), sv)
        neg = g < 0
        sv = torch.where(neg, sdd, sv)
        g = torch.where(neg, torch.zeros_like(g), g)
        sv = sv.clamp_min(eps)
        num = num + torch.log10(1.0 + g * g * srr / (sv + sigma_nsq)).flatten(1).sum(1)
        den = den + torch.log10(1.0 + srr / sigma_nsq).flatten(1).sum(1)
    return num / den.clamp_min(eps)


def fusion_vif_t(fused: torch.Tensor, ir: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """VIF(IR -> F) + VIF(Y -> F) per image (the reported VIF's convention), inputs 0..1 -> (N,)."""
    f = fused * 255.0
    return vif_pair_t(ir * 255.0, f) + vif_pair_t(y * 255.0, f)


def vif_guard(fused: torch.Tensor, generic: torch.Tensor, ir: torch.Tensor, y: torch.Tensor,
              budget: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_n ReLU(1 - VIF(F_n) / VIF(G_n) - budget)`` and the mean relative drop (for logging).

    Why: the customization is allowed to cost a little VIF (the issue's budget is 5 %) and
    nothing beyond it; a hinge on the relative drop against the generic image ``generic`` of the
    same pair leaves the task loss free inside the budget instead of pulling every change back
    as the stage-1 fidelity loss does. ``generic`` is a target: no gradient flows into it.
    """
    with torch.no_grad():
        v_g = fusion_vif_t(generic, ir, y).clamp_min(1e-6)
    drop = 1.0 - fusion_vif_t(fused, ir, y) / v_g
    return F.relu(drop - budget).mean(), drop.detach().mean()
