"""RSC training: task-customized fusion against frozen backbone and task networks.

Per step, on a batch of full-resolution crops with their boxes:

1. the frozen backbone runs its task-independent part once (vfn: both encoders; vfn2: the
   context blocks and the detail path) and makes the generic fused Y;
2. per task: the task descriptor is the pooled ``features`` of the task network on the generic
   fused colour image (``descriptor: features``; with probability ``descriptor_dropout`` the
   RSC's stored mean descriptor is used instead, as at inference without a descriptor); the
   RSC customizes the backbone's features (vfn: the encoder features with :class:`RSC`; vfn2:
   the context map with :class:`ContextRSC`, picked by the backbone's ``arch``), the backbone
   finishes the fusion from them, the visible CbCr gives the colour image, and the frozen task
   network's loss is taken on it;
3. each task's objective is ``L_t + alpha * ReLU(L_t - L_ref) + w_fid * fusion_loss``
   (:func:`ivif_fusion.losses.rsc_task_loss`; ``L_ref`` the generic image's task loss on the same
   batch, or the previous step's loss), plus, when ``w_guard > 0``, the fidelity guard
   ``w_guard * sum_m ReLU(drop of metric m vs the generic image - guard_budget)`` over
   ``guard_metrics`` (VIF, Qabf; :func:`ivif_fusion.losses.fidelity_guard`);
4. CAGrad (:mod:`ivif_fusion.cagrad`) combines the per-task gradients of the RSC parameters; Adam steps.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..colour import rgb_to_ycbcr, ycbcr_to_rgb_t
from ..train_config import TrainRSCConfig
from ..data.shared import class_boxes, open_shared, split_items
from ..data.splits import cross_fit_fold
from ..errors import UserError
from ..losses import GUARD_METRICS, fidelity_guard, guard_reference, rsc_task_loss
from ..metrics.fusion import MIN_SIDE
from ..models import checkpoint
from ..models.rsc import customized_fusion, make_rsc, pool_descriptor, save_rsc
from ..cagrad import CAGrad
from ..paths import require_data_root, resolve
from .run import CsvLog, cosine_lr, prepare_out, rsc_warmup, run_meta, seed_everything


class RSCTrainingError(UserError):
    """The RSC training configuration cannot be run (missing weights, unsupported task)."""


@dataclass
class LabelledPair:
    """One training pair held in memory: IR, Y, CbCr as uint8 and boxes (K, 5) [cls, x1, y1, x2, y2] pixels."""

    name: str
    thermal: np.ndarray    # (H, W) uint8
    ycc: np.ndarray   # (H, W, 3) uint8
    boxes: np.ndarray  # (K, 5) float32


def load_labelled_pairs(cfg: TrainRSCConfig, progress: bool = True, split: str | None = None) -> list[LabelledPair]:
    """Training pairs (MSRS: train frame range only) with their boxes from ``labels_det/<label_set>``;
    ``split`` names another MSRS range instead (e.g. 'val', for diagnostics). Every pair needs a label file."""
    from tqdm import tqdm

    from ..imageops import to_uint8

    root = require_data_root(cfg.data_root or None)
    reader = open_shared(root, cfg.dataset, label_set=cfg.label_set)
    if cfg.label_set not in reader.label_sets:
        raise RSCTrainingError(f"no box labels at {reader.root / 'labels_det' / cfg.label_set}: RSC training needs "
                               "a labelled dataset")
    pairs = []
    for it in tqdm(split_items(reader, cfg.dataset, split or "train"), desc="loading pairs", disable=not progress,
                   unit="pair"):
        s = reader.load(it)
        boxes = class_boxes(reader.record(it))
        pairs.append(LabelledPair(it.file, to_uint8(s.thermal), to_uint8(rgb_to_ycbcr(s.visible)), boxes))
    if not pairs:
        raise RSCTrainingError(f"no training pairs in {reader.root}")
    return pairs


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, size: int, min_visible: float, flip: bool) -> np.ndarray:
    """Boxes (K, 5) [cls, x1, y1, x2, y2] moved into a ``size`` crop at (x0, y0), clipped; boxes with less
    than ``min_visible`` of their area inside are dropped; ``flip`` mirrors them horizontally."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    b = boxes.copy()
    b[:, [1, 3]] -= x0
    b[:, [2, 4]] -= y0
    area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    c = b.copy()
    c[:, 1:] = np.clip(c[:, 1:], 0, size)
    inside = (c[:, 3] - c[:, 1]) * (c[:, 4] - c[:, 2])
    keep = (inside >= min_visible * np.maximum(area, 1e-9)) & (c[:, 3] - c[:, 1] >= 2) & (c[:, 4] - c[:, 2] >= 2)
    c = c[keep]
    if flip:
        c[:, [1, 3]] = size - c[:, [3, 1]]
    return c


def sample_batch(pairs: list[LabelledPair], size: int, batch: int, seed: int, step: int,
                 min_visible: float = 0.4) -> dict[str, Any]:
    """A deterministic batch (a function of seed and step): crops centred near a random box 3 times out of 4."""
    rng = np.random.default_rng([seed, step])
    irs, yccs, targets = [], [], []
    for _ in range(batch):
        p = pairs[int(rng.integers(len(pairs)))]
        h, w = p.thermal.shape
        thermal, ycc = p.thermal, p.ycc
        if h < size or w < size:  # small images are padded by reflection up to the crop
            pad = ((0, max(0, size - h)), (0, max(0, size - w)))
            thermal, ycc = np.pad(thermal, pad, mode="reflect"), np.pad(ycc, pad + ((0, 0),), mode="reflect")
            h, w = thermal.shape
        if len(p.boxes) and rng.random() < 0.75:
            bx = p.boxes[int(rng.integers(len(p.boxes)))]
            cx, cy = (bx[1] + bx[3]) / 2, (bx[2] + bx[4]) / 2
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, w - size))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, h - size))
        else:
            x0, y0 = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        flip = bool(rng.random() < 0.5)
        a, b = thermal[y0:y0 + size, x0:x0 + size], ycc[y0:y0 + size, x0:x0 + size]
        if flip:
            a, b = a[:, ::-1], b[:, ::-1]
        irs.append(np.ascontiguousarray(a))
        yccs.append(np.ascontiguousarray(b))
        targets.append(crop_boxes(p.boxes, x0, y0, size, min_visible, flip))
    ir_t = torch.from_numpy(np.stack(irs)).float().div_(255.0).unsqueeze(1)
    ycc_t = torch.from_numpy(np.stack(yccs)).float().div_(255.0).permute(0, 3, 1, 2).contiguous()
    return {"ir": ir_t, "y": ycc_t[:, :1], "cbcr": ycc_t[:, 1:], "targets": targets}


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
    for name, ad in every:
        kind = getattr(ad, "TASK", "detection")
        if kind != "detection":
            raise RSCTrainingError(f"task '{name}' ({kind}): only detection labels exist in the shared data")
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
                   gumbel=cfg.gumbel).to(device)
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
    log = CsvLog(out / "log.csv", ["step", "lr"] + [f"{t}_{c}" for t in task_names for c in cols]
                 + ["grad_norm", "min_task_cos", "seconds"])

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
                ref = prev[t]
                if cfg.reference == "generic":
                    with torch.no_grad():
                        ref = judge.loss(generic, b["targets"])
                fused = model.fuse_decode(*model.customize(*parts, t, desc))
                task_loss = judge.loss(to_rgb(fused, cbcr), b["targets"])
                parts = rsc_task_loss(task_loss, ref, fused, thermal, y, alpha=cfg.alpha, w_fid=cfg.w_fid)
                drops = {}
                if guarded:
                    guard, drops = fidelity_guard(fused, guard_ref, thermal, y, cfg.guard_budget)
                    parts["total"] = parts["total"] + cfg.w_guard * guard
                prev[t] = task_loss.detach()
                losses.append(parts["total"])
                row[t] = {"task": parts["task"].item(), "ref": float("nan") if ref is None else float(ref),
                          "reward_punishment": parts["reward_punishment"].item(),
                          "fidelity": parts["fidelity"].item(), "total": parts["total"].item(),
                          **{f"{m.lower()}_drop": d.item() for m, d in drops.items()}}
            opt.zero_grad(set_to_none=True)
            info = mtl.backward(losses)
            opt.step()
            history.append({f"{t}_{c}": row[t][c] for t in task_names for c in cols})
            log.row([step + 1, f"{lr:.6g}"] + [f"{row[t][c]:.6f}" for t in task_names for c in cols]
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
