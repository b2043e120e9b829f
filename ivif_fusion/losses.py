"""Losses: unsupervised fusion loss (stage 1), and task-side terms (RSC, distillation).

Fusion loss (stage 1, no labels): ``w_int * L1(F, max(IR, Y)) + w_grad * L1(|grad F|, max(|grad IR|, |grad Y|))``
with Sobel L1 gradient magnitudes (:func:`ivif_fusion.ops.sobel_l1`). Defaults 0.2 / 1.0. An optional
salient-target term ``w_sal * L1_mask(F, IR)`` keeps hot targets at their thermal intensity, where
the mask is an unsupervised thermal saliency (:func:`thermal_saliency`); off by default. An optional
complementarity term ``w_scd * (2 - SCD(F))`` (:func:`scd_t`) asks that what the fused image adds to
each source correlate with the other source: the sum of the correlations of differences; off by default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ops import check_shape, sobel_l1, sobel_xy


def thermal_saliency(thermal: torch.Tensor, k: float = 1.0, softness: float = 0.05) -> torch.Tensor:
    """Soft mask (N, 1, H, W) of thermal targets: pixels hotter than their image's mean + ``k`` std.

    Per image, ``sigmoid((IR - (mean + k * std)) / softness)`` with the population std, so the
    mask is ~1 on regions clearly hotter than the scene (people, engines) and ~0 elsewhere. It
    stands in for the labelled target masks of TarDAL-style losses, which this data lacks.
    """
    check_shape(thermal, 4, "thermal_saliency", 1)
    mean = thermal.mean(dim=(2, 3), keepdim=True)
    std = thermal.std(dim=(2, 3), keepdim=True, unbiased=False)
    return torch.sigmoid((thermal - (mean + k * std)) / softness)


def salient_target_loss(fused: torch.Tensor, thermal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between F and IR weighted by ``mask`` and normalised by the mask's mass (0 without targets)."""
    mask = mask.detach()
    return (mask * (fused - thermal).abs()).sum() / mask.sum().clamp_min(1e-6)


def _corr_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image (N,) of two (N, 1, H, W) tensors (0 where either is constant)."""
    a = a - a.mean(dim=(1, 2, 3), keepdim=True)
    b = b - b.mean(dim=(1, 2, 3), keepdim=True)
    num = (a * b).sum(dim=(1, 2, 3))
    den = torch.sqrt((a * a).sum(dim=(1, 2, 3)) * (b * b).sum(dim=(1, 2, 3)) + 1e-12)
    return num / den


def scd_t(fused: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SCD per image (N,): corr(F - Y, IR) + corr(F - IR, Y), as :func:`ivif_fusion.metrics.fusion.scd`."""
    return _corr_t(fused - y, thermal) + _corr_t(fused - thermal, y)


def fusion_loss(fused: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor, w_int: float = 0.2,
                w_grad: float = 1.0, w_sal: float = 0.0, sal_k: float = 1.0, w_scd: float = 0.0) -> torch.Tensor:
    """Intensity + gradient (+ salient-target) fusion loss on (N, 1, H, W) tensors in 0..1. Returns a scalar."""
    for t, n in ((fused, "fused"), (thermal, "ir"), (y, "y")):
        check_shape(t, 4, f"fusion_loss {n}", 1)
    if not (fused.shape == thermal.shape == y.shape):
        raise ValueError(f"fusion_loss: shapes differ {tuple(fused.shape)}, {tuple(thermal.shape)}, {tuple(y.shape)}")
    terms = fusion_loss_terms(fused, thermal, y, sal_k, salient=bool(w_sal), scd=bool(w_scd))
    return weighted_fusion_loss(terms, w_int, w_grad, w_sal, w_scd)


def fusion_loss_terms(fused: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor, sal_k: float = 1.0, *,
                      salient: bool = True, scd: bool = True) -> dict[str, torch.Tensor]:
    """The unweighted terms: ``intensity``, ``gradient`` and, when asked, ``salient`` and ``scd`` (the batch's
    mean SCD, higher is better). Kept in the graph, so one evaluation serves the loss and the log."""
    terms = {"intensity": F.l1_loss(fused, torch.maximum(thermal, y)),
             "gradient": F.l1_loss(sobel_l1(fused), torch.maximum(sobel_l1(thermal), sobel_l1(y)))}
    if salient:
        terms["salient"] = salient_target_loss(fused, thermal, thermal_saliency(thermal, sal_k))
    if scd:
        terms["scd"] = scd_t(fused, thermal, y).mean()
    return terms


def weighted_fusion_loss(terms: dict[str, torch.Tensor], w_int: float = 0.2, w_grad: float = 1.0,
                         w_sal: float = 0.0, w_scd: float = 0.0) -> torch.Tensor:
    """The stage-1 loss from :func:`fusion_loss_terms` (a term with weight 0 need not be there)."""
    loss = w_int * terms["intensity"] + w_grad * terms["gradient"]
    if w_sal:
        loss = loss + w_sal * terms["salient"]
    if w_scd:
        loss = loss + w_scd * (2.0 - terms["scd"])
    return loss


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
                  thermal: torch.Tensor, y: torch.Tensor, *, alpha: float = 5.0, w_fid: float = 1.0,
                  w_int: float = 0.2, w_grad: float = 1.0) -> dict[str, torch.Tensor]:
    """One task's RSC objective and its parts.

    ``total = L_t + alpha * ReLU(L_t - L_ref) + w_fid * fusion_loss(fused, ir, y)``; the fidelity
    term (the stage-1 fusion loss) keeps the customized Y an image of both sources. Without a
    reference (first step of ``previous`` mode) the reward/punishment term is 0.
    """
    rp = reward_punishment(task_loss, reference, alpha) if reference is not None else task_loss.new_zeros(())
    fid = fusion_loss(fused, thermal, y, w_int, w_grad)
    return {"total": task_loss + rp + w_fid * fid, "task": task_loss, "reward_punishment": rp, "fidelity": fid}


# ---------------------------------------------------------------------- RSC: VIF guard


def _gauss_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """The metric's own Gaussian window (metrics.vif.gaussian_window_1d), as a (1, 1, size, size) conv kernel."""
    from .metrics.vif import gaussian_window_1d

    k = torch.as_tensor(gaussian_window_1d(size, sigma), dtype=like.dtype, device=like.device)
    return (k[:, None] * k[None, :])[None, None]


def vif_pair_t(ref: torch.Tensor, dist: torch.Tensor, sigma_nsq: float = 2.0) -> torch.Tensor:
    """Differentiable pixel-domain VIF per image, (N, 1, H, W) on the 0..255 scale -> (N,).

    The same computation as :func:`ivif_fusion.metrics.vif.vif_pair` (4 scales, 'valid'
    Gaussian windows, the reference implementation's special cases as ``torch.where``, 1.0 for a
    flat reference), so a training term built on it moves the metric that is reported; test_rsc
    checks the two agree.
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
    return torch.where(den > 0, num / den.clamp_min(eps), torch.ones_like(num))


def fusion_vif_t(fused: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """VIF(IR -> F) + VIF(Y -> F) per image (the reported VIF's convention), inputs 0..1 -> (N,)."""
    f = fused * 255.0
    return vif_pair_t(thermal * 255.0, f) + vif_pair_t(y * 255.0, f)


def _qabf_gradients_t(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge strength and orientation of (N, 1, H, W), as metrics.qabf.qabf_gradients ("cddfuse")."""
    gx, gy = sobel_xy(x, padding="zeros")
    sx = -gx  # the evaluators' s_x (convolution with [-1 0 1; -2 0 2; -1 0 1])
    sq = sx * sx + gy * gy
    flat = sq == 0
    # exact values; the where()s keep sqrt's and atan's gradients finite on flat pixels and where s_x = 0
    g = torch.where(flat, torch.zeros_like(sq), torch.sqrt(torch.where(flat, torch.ones_like(sq), sq)))
    vertical = sx == 0
    alpha = torch.where(vertical, torch.full_like(sx, math.pi / 2),
                        torch.atan(gy / torch.where(vertical, torch.ones_like(sx), sx)))
    return g, alpha


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return num / torch.where(den == 0, torch.ones_like(den), den)


def _edge_preservation_t(g_s, a_s, g_f, a_f):  # noqa: ANN001, ANN202 - tensors, as metrics.qabf
    from .metrics.qabf import QABF_DA, QABF_DG, QABF_KA, QABF_KG, QABF_TA, QABF_TG

    rel_g = torch.where(g_s > g_f, _safe_div(g_f, g_s), torch.where(g_s == g_f, g_f, _safe_div(g_s, g_f)))
    rel_a = 1.0 - (a_s - a_f).abs() / (math.pi / 2.0)
    return QABF_TG / (1.0 + torch.exp(QABF_KG * (rel_g - QABF_DG))) * QABF_TA / (1.0 + torch.exp(QABF_KA * (rel_a - QABF_DA)))


def qabf_t(thermal: torch.Tensor, y: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Differentiable Qabf per image, (N, 1, H, W) on the 0..255 scale -> (N,); the computation of
    :func:`ivif_fusion.metrics.qabf.qabf` (default convention, L = 1) in torch (test_rsc checks they agree)."""
    ga, aa = _qabf_gradients_t(thermal)
    gb, ab = _qabf_gradients_t(y)
    gf, af = _qabf_gradients_t(fused)
    q = _edge_preservation_t(ga, aa, gf, af) * ga + _edge_preservation_t(gb, ab, gf, af) * gb
    return q.flatten(1).sum(1) / (ga + gb).flatten(1).sum(1).clamp_min(1e-12)


#: Fusion metrics the RSC guard can hold (higher is better for each): name -> f(fused, ir, y) on 0..1 -> (N,).
GUARD_METRICS = {
    "VIF": fusion_vif_t,
    "Qabf": lambda fused, thermal, y: qabf_t(thermal * 255.0, y * 255.0, fused * 255.0),
}


def guard_reference(generic: torch.Tensor, thermal: torch.Tensor, y: torch.Tensor,
                    metrics: tuple | list = ("VIF", "Qabf")) -> dict[str, torch.Tensor]:
    """Batch-mean value of each guarded metric on the generic images: the target :func:`fidelity_guard`
    compares against. No gradient; computed once per batch and shared by every task."""
    unknown = [m for m in metrics if m not in GUARD_METRICS]
    if unknown:
        raise ValueError(f"unknown guard metrics {unknown}; choose from {sorted(GUARD_METRICS)}")
    with torch.no_grad():
        return {m: GUARD_METRICS[m](generic, thermal, y).mean().clamp_min(1e-6) for m in metrics}


def fidelity_guard(fused: torch.Tensor, reference: dict[str, torch.Tensor], thermal: torch.Tensor, y: torch.Tensor,
                   budget: float = 0.03) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_m ReLU(1 - mean_n M(F_n) / mean_n M(G_n) - budget)`` and each metric's relative drop (logging).

    ``reference`` is :func:`guard_reference` of the generic images G of the same crops; its keys
    name the guarded metrics. Why: the customization may cost a little of the reported fusion
    quality (a budget such as 5 % of Qabf and VIF) and nothing beyond it. A hinge on the
    relative drop leaves the task loss free inside the budget, where the stage-1 fidelity loss
    pulls back every change. The drop is that of the batch mean, as reported figures are means
    over images: a per-crop hinge binds on whichever crop happens to change most and held a
    trial run to a tenth of the budget. Metrics are the reported ones, computed in torch
    (GUARD_METRICS).
    """
    penalty = fused.new_zeros(())
    drops = {}
    for m, ref in reference.items():
        drop = 1.0 - GUARD_METRICS[m](fused, thermal, y).mean() / ref
        penalty = penalty + F.relu(drop - budget)
        drops[m] = drop.detach()
    return penalty, drops
