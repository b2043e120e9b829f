"""RSC training: task-customized fusion against frozen backbone and task networks.

Per step, on a batch of full-resolution crops with their boxes and, when a task is a segmenter,
their class-id masks (:mod:`ivif_fusion.training.rsc_batches`; masks from ``masks_dir``, cropped
and flipped with the images):

1. the frozen backbone runs its task-independent part once (vfn: both encoders; vfn2: the
   context blocks and the detail path) and makes the generic fused Y;
2. per task: the task descriptor is the pooled ``features`` of the task network on the generic
   fused colour image (``descriptor: features``; with probability ``descriptor_dropout`` the
   RSC's stored mean descriptor is used instead, as at inference without a descriptor); the
   RSC customizes the backbone's features (vfn: the encoder features with :class:`RSC`; vfn2:
   the context map with :class:`ContextRSC`, picked by the backbone's ``arch``), the backbone
   finishes the fusion from them, the visible CbCr gives the colour image, and the frozen task
   network's loss is taken on it (a detector: its loss on the crops' boxes; a segmenter: its
   pixel cross-entropy on the crops' masks, 255 ignored);
3. each task's objective is ``L_t + alpha * ReLU(L_t - L_ref) + w_fid * fusion_loss``
   (:func:`ivif_fusion.losses.rsc_task_loss`; ``L_ref`` the generic image's task loss on the same
   batch, or the previous step's loss), plus, when ``w_guard > 0``, the fidelity guard
   ``w_guard * sum_m ReLU(drop of metric m vs the generic image - guard_budget)`` over
   ``guard_metrics`` (VIF, Qabf; :func:`ivif_fusion.losses.fidelity_guard`);
4. CAGrad (:mod:`ivif_fusion.cagrad`) combines the per-task gradients of the RSC parameters; Adam steps.
   ``cagrad_c: 0`` is the plain average of the task gradients, i.e. with Adam plain summing of the
   task objectives. ``log.csv`` has, per task, its loss terms, its gradient norm, CAGrad's dual
   weight, the task gradient's weight in the update and cos(task gradient, update), and per step
   the update norm and the smallest cosine between two task gradients (< 0: conflict).

Cross-fitting (a task entry with ``cross_fit: [net_0, ..., net_{n-1}]``): step s draws its crops
from fold ``s % n`` only (:func:`ivif_fusion.data.splits.cross_fit_fold`), and that fold's task
loss and reference come from ``net_k``, a network of the same task trained without fold k
(``ivif train task --set holdout_fold=k/n``). The descriptor still comes from ``weights``, the
network the RSC serves at run time.

Crops keep the images at their native resolution (what the backbone sees at deployment). The
detector's input size is scaled with the crop (``imgsz * crop / full long side``) so that
objects have the size they have when the detector runs on full frames.

Outputs in ``cfg.out``: ``rsc.pt`` (kind 'rsc', RSC + backbone configs, metadata), ``log.csv``,
``config.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..colour import ycbcr_to_rgb_t
from ..train_config import TrainRSCConfig
from ..data.splits import cross_fit_fold
from ..losses import GUARD_METRICS, fidelity_guard, guard_reference, rsc_task_loss
from ..metrics.fusion import MIN_SIDE
from ..models import checkpoint
from ..models.rsc import customized_fusion, make_rsc, pool_descriptor, save_rsc
from ..cagrad import CAGrad
from ..paths import resolve
from .rsc_batches import LabelledPair, RSCTrainingError, load_labelled_pairs, sample_batch
from .run import CsvLog, cosine_lr, prepare_out, rsc_warmup, run_meta, seed_everything
from .segmentation import require_masks_dir

#: task kinds (an adapter's ``TASK``) RSC trains against, and the batch entry that holds their targets
TASK_TARGETS = {"detection": "targets", "segmentation": "masks"}


def to_rgb(fused_y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Fused Y (N, 1, H, W) + visible CbCr (N, 2, H, W) -> RGB (N, 3, H, W) in 0..1 (differentiable)."""
    return ycbcr_to_rgb_t(torch.cat([fused_y, cbcr], 1))


def _task_imgsz(adapter: Any, crop: int, full_side: int) -> int | None:
    """Detector input size for crops so objects keep their full-frame scale (None: adapter has no imgsz)."""
    cfg = getattr(adapter, "cfg", None)
    if cfg is None or not hasattr(cfg, "imgsz") or full_side <= 0:
        return None
    return max(32, int(round(crop * cfg.imgsz / full_side / 32)) * 32)


def _load_cross_fit(cfg: TrainRSCConfig, task_names: list[str],
                    sources: dict[str, str]) -> tuple[int | None, dict[str, list[Any]]]:
    """Fold networks of the tasks that name ``cross_fit``: (number of folds or None, task -> networks).

    Why: the task network was trained on the same training pairs, so its loss there is close to
    its memorised minimum for generic fusion and says little about what helps on new images;
    network k of ``cross_fit`` was trained with ``holdout_fold: k/n`` and judges only fold-k
    pairs. Each checkpoint's recorded ``holdout_fold`` must be exactly ``k/n``.
    """
    from ..tasks import load_task

    folds, out = None, {}
    for t in cfg.tasks:
        if not isinstance(t, dict) or not t.get("cross_fit"):
            continue
        paths = [resolve(p) for p in t["cross_fit"]]
        n = len(paths)
        if n < 2 or (folds is not None and n != folds):
            raise RSCTrainingError(f"task '{t['name']}': cross_fit needs one network per fold, at least 2, and "
                                   f"the same number for every task (got {n})")
        folds = n
        nets = []
        for k, p in enumerate(paths):
            if not p.is_file():
                raise RSCTrainingError(f"task '{t['name']}': cross-fit network {p} not found (train it with "
                                       f"`ivif train task --set holdout_fold={k}/{n}`)")
            held = (checkpoint.load(p).get("meta") or {}).get("train_config", {}).get("holdout_fold", "")
            if held != f"{k}/{n}":
                raise RSCTrainingError(f"task '{t['name']}': cross_fit[{k}] = {p} was trained with holdout_fold "
                                       f"'{held}', expected '{k}/{n}'")
            nets.append(load_task(p, cfg.device))
            sources[f"{t['name']}_fold{k}"] = str(p)
        out[str(t["name"])] = nets
    unknown = set(out) - set(task_names)
    if unknown:
        raise RSCTrainingError(f"cross_fit given for unknown tasks {sorted(unknown)}")
    return folds, out


def train(cfg: TrainRSCConfig, progress: bool = True, *, backbone: torch.nn.Module | None = None,
          adapters: dict[str, Any] | None = None, pairs: list[LabelledPair] | None = None) -> Path:
    """Train an RSC; returns ``<out>/rsc.pt``.

    ``backbone``, ``adapters`` (task name -> adapter with ``loss``/``features``) and ``pairs`` may be
    given directly (tests); otherwise they are loaded from the configured checkpoints and data.
    """
    from tqdm import tqdm

    seed_everything(cfg)
    device = torch.device(cfg.device)
    if cfg.crop % 32:
        raise RSCTrainingError(f"crop {cfg.crop} must be a multiple of 32")
    task_names = [str(t["name"]) if isinstance(t, dict) else str(t) for t in cfg.tasks]
    if not task_names or len(set(task_names)) != len(task_names):
        raise RSCTrainingError(f"'tasks' must name distinct tasks, got {task_names}")
    sources: dict[str, str] = {}
    if backbone is None:
        sources["backbone"] = str(resolve(cfg.backbone))
        backbone = checkpoint.load_vfn(resolve(cfg.backbone))
    if adapters is None:
        from ..tasks import load_task

        adapters = {}
        for t in cfg.tasks:
            if not isinstance(t, dict) or not t.get("weights"):
                raise RSCTrainingError(f"task entry {t!r} needs 'name' and 'weights' (a task network checkpoint)")
            path = resolve(t["weights"])
            if not path.is_file():
                raise RSCTrainingError(f"task '{t['name']}': weights {path} not found (train it with "
                                       "`ivif train task` first)")
            adapters[str(t["name"])] = load_task(path, cfg.device)
            sources[str(t["name"])] = str(path)
    folds, fold_adapters = _load_cross_fit(cfg, task_names, sources)
    every = list(adapters.items()) + [(t, a) for t, ads in fold_adapters.items() for a in ads]  # (task, network)
    kinds: dict[str, str] = {}
    for name, ad in every:
        kind = getattr(ad, "TASK", "detection")
        if kind not in TASK_TARGETS:
            raise RSCTrainingError(f"task '{name}' ({kind}): RSC trains against {' and '.join(TASK_TARGETS)} "
                                   "networks only")
        if kinds.setdefault(name, kind) != kind:
            raise RSCTrainingError(f"task '{name}': a cross-fit network is a {kind} network, the task's is "
                                   f"{kinds[name]}")
    with_masks = "segmentation" in kinds.values()
    if with_masks and pairs is None:
        masks_dir = require_masks_dir(cfg)  # before the pairs load: a missing folder fails at once
        pairs = load_labelled_pairs(cfg, progress, masks_dir=masks_dir)
    elif with_masks and any(p.mask is None for p in pairs):
        raise RSCTrainingError("a segmentation task needs a class-id mask with every training pair")
    backbone = backbone.to(device).eval().requires_grad_(False)
    for _, ad in every:
        if hasattr(ad, "freeze"):
            ad.freeze()
    if pairs is None:
        pairs = load_labelled_pairs(cfg, progress)
    full_side = max(max(p.thermal.shape) for p in pairs)
    # cross-fitting: batch k draws only pairs of fold k, whose loss comes from the network that never saw them
    pools = [pairs] if folds is None else [[p for p in pairs if cross_fit_fold(p.name, folds) == k]
                                           for k in range(folds)]
    if any(not pool for pool in pools):
        raise RSCTrainingError(f"cross-fitting: a fold of {folds} has no training pairs")

    dims = None
    if cfg.descriptor == "features":
        with torch.no_grad():
            probe = torch.rand(1, 3, 64, 64, device=device)
            dims = {t: int(adapters[t].features(probe).shape[1]) for t in task_names}
    rsc = make_rsc(backbone.cfg, task_names, dims, num_bases=cfg.num_bases, hidden=cfg.hidden, top_k=cfg.top_k,
                   gumbel=cfg.gumbel, selection=cfg.selection).to(device)
    model = customized_fusion(backbone, rsc)
    opt = torch.optim.Adam(rsc.parameters(), lr=cfg.lr)
    mtl = CAGrad(rsc.parameters(), cfg.cagrad_c, cfg.cagrad_rescale)

    out = prepare_out(cfg)
    guarded = list(cfg.guard_metrics) if cfg.w_guard > 0 else []
    bad = [m for m in guarded if m not in GUARD_METRICS]
    if bad:
        raise RSCTrainingError(f"guard_metrics {bad} unknown; choose from {sorted(GUARD_METRICS)}")
    if guarded and cfg.crop < MIN_SIDE:
        raise RSCTrainingError(f"the fidelity guard needs crops of at least {MIN_SIDE} pixels (VIF's four scales), "
                               f"got crop {cfg.crop}")
    cols = ["task", "ref", "reward_punishment", "fidelity"] + [f"{m.lower()}_drop" for m in guarded] + ["total"]
    # what CAGrad saw and did, per task (cagrad.CAGrad.backward): |g_t|, dual weight, weight of g_t in the update, cos(g_t, d)
    mtl_cols = {"gradient_norm": "task_grad_norms", "cagrad_weight": "weights", "update_coef": "coefs",
                "update_cos": "update_cos"}
    log = CsvLog(out / "log.csv", ["step", "lr"] + [f"{t}_{c}" for t in task_names for c in cols]
                 + [f"{t}_{c}" for t in task_names for c in mtl_cols] + ["grad_norm", "min_task_cos", "seconds"])

    saved_imgsz = [(ad, getattr(getattr(ad, "cfg", None), "imgsz", None)) for _, ad in every]
    train_imgsz = {t: _task_imgsz(ad, cfg.crop, full_side) for t, ad in adapters.items()}
    rng = np.random.default_rng([cfg.seed, 99])
    warmup = rsc_warmup(cfg.steps)
    prev: dict[str, torch.Tensor | None] = {t: None for t in task_names}
    t0 = time.time()
    bar = tqdm(total=cfg.steps, desc="train rsc", disable=not progress, unit="step")
    history: list[dict[str, float]] = []
    try:
        for t, ad in every:
            if train_imgsz[t] is not None:
                ad.cfg.imgsz = train_imgsz[t]
        model.train()
        backbone.eval()
        for step in range(cfg.steps):
            fold = step % len(pools)
            b = sample_batch(pools[fold], cfg.crop, cfg.batch_size, cfg.seed, step, cfg.min_visible)
            thermal, y, cbcr = b["ir"].to(device), b["y"].to(device), b["cbcr"].to(device)
            lr = cosine_lr(step, cfg.steps, cfg.lr, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.no_grad():
                parts = model.encode(thermal, y)  # the backbone's task-independent part, once
                generic_y = model.fuse_decode(*parts)
                generic = to_rgb(generic_y, cbcr)
            guard_ref = guard_reference(generic_y, thermal, y, guarded) if guarded else {}
            losses, row = [], {}
            for t in task_names:
                ad = adapters[t]
                judge = fold_adapters[t][fold] if t in fold_adapters else ad  # the network whose loss teaches
                desc = None
                if dims is not None and rng.random() >= cfg.descriptor_dropout:
                    with torch.no_grad():
                        desc = pool_descriptor(ad.features(generic))
                targets = b[TASK_TARGETS[kinds[t]]]  # boxes, or the crops' class-id masks
                ref = prev[t]
                if cfg.reference == "generic":
                    with torch.no_grad():
                        ref = judge.loss(generic, targets)
                fused = model.fuse_decode(*model.customize(*parts, t, desc))
                task_loss = judge.loss(to_rgb(fused, cbcr), targets)
                terms = rsc_task_loss(task_loss, ref, fused, thermal, y, alpha=cfg.alpha, w_fid=cfg.w_fid)
                drops = {}
                if guarded:
                    guard, drops = fidelity_guard(fused, guard_ref, thermal, y, cfg.guard_budget)
                    terms["total"] = terms["total"] + cfg.w_guard * guard
                prev[t] = task_loss.detach()
                losses.append(terms["total"])
                row[t] = {"task": terms["task"].item(), "ref": float("nan") if ref is None else float(ref),
                          "reward_punishment": terms["reward_punishment"].item(),
                          "fidelity": terms["fidelity"].item(), "total": terms["total"].item(),
                          **{f"{m.lower()}_drop": d.item() for m, d in drops.items()}}
            opt.zero_grad(set_to_none=True)
            info = mtl.backward(losses)
            opt.step()
            for i, t in enumerate(task_names):
                row[t].update({c: info[key][i] for c, key in mtl_cols.items()})
            history.append({f"{t}_{c}": row[t][c] for t in task_names for c in [*cols, *mtl_cols]}
                           | {"min_task_cos": info["min_task_cos"]})
            log.row([step + 1, f"{lr:.6g}"] + [f"{row[t][c]:.6f}" for t in task_names for c in cols]
                    + [f"{row[t][c]:.6g}" for t in task_names for c in mtl_cols]
                    + [f"{info['grad_norm']:.6g}", f"{info['min_task_cos']:.4f}", f"{time.time() - t0:.1f}"])
            bar.update(1)
            first = task_names[0]
            bar.set_postfix(task=f"{row[first]['task']:.3f}", ref=f"{row[first]['ref']:.3f}")
            if cfg.max_minutes and time.time() - t0 > 60 * cfg.max_minutes:
                break  # time budget spent: save what was learned (the log says how far it got)
    finally:
        bar.close()
        log.close()
        for ad, size in saved_imgsz:
            if size is not None:
                ad.cfg.imgsz = size
    rsc.eval()
    last = history[-min(50, len(history)):]
    summary = {k: round(float(np.nanmean([h[k] for h in last])), 6) for k in history[-1]}
    meta = run_meta(cfg, pairs=len(pairs), pair_names_head=[p.name for p in pairs[:5]], steps=len(history),
                    seconds=round(time.time() - t0, 1), task_imgsz_during_training=train_imgsz,
                    cross_fit_folds=folds, last50_mean=summary,
                    sources={k: {"path": v, "sha256": checkpoint.file_sha256(v)} for k, v in sources.items()})
    path = save_rsc(out / "rsc.pt", rsc, backbone.cfg, meta)
    return path
