"""VIFA training: shared backbone + one-layer head per task, two distillations.

1. **Key channels** of the teacher's ``layer`` (:mod:`ivif_fusion.key_channels`): selected once on
   ``select_images`` training images resized to ``select_side``, cached by teacher checksum +
   options + image ids; the report is copied to ``<out>/key_channels.md``.
2. **References**: every task has a reference fusion model, a callable ``(ir, y) -> fused Y``
   built by a registered kind (:data:`REFERENCES`, :func:`register_reference`):

   ``teacher``   the teacher's generic output;
   ``vfn``       another VFN checkpoint (``weights``);
   ``rsc``       the RSC-customized fusion of ``rsc_task`` (default: the task name) from the RSC
                 checkpoint ``weights``, on the teacher backbone;
   ``finetune``  a copy of the teacher fine-tuned ``finetune_steps`` steps with the fusion loss
                 weighted by the task's ``w_int`` / ``w_grad`` (a task-flavoured stand-in when no
                 RSC model exists).

   A task whose reference cannot be built (missing file) uses its ``fallback`` kind when one is
   given; the checkpoint's meta records what was actually used.
3. **Joint training** of the student (backbone initialised from the teacher, heads from its
   generic head): ``w_key * sum_k w_k ||s_k - t_k||^2`` over the key channels (mean over pixels)
   + per task ``w_ref * ||head_t - ref_t||^2`` (+ ``w_fusion * fusion_loss(head_t)``). A head's
   parameters appear only in its own task's terms, so it receives gradients only from them
   (:func:`vifa_losses` returns the per-task terms separately; tested).

Outputs in ``cfg.out``: ``vifa.pt`` (kind 'vifa'), ``log.csv``, ``config.yaml``, ``key_channels.md``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..train_config import TrainVifaConfig
from ..errors import UserError
from ..key_channels import KeyChannelSelection, SelectionOptions, cache_key, select_cached, select_from_features
from ..losses import fusion_loss
from ..models import checkpoint
from ..models.heads import MultiHeadFusion
from ..models.vfn import VFN
from ..models.vifa import build_student, forward_layer, head_parameters, save_vifa
from ..paths import resolve
from .run import CropDataset, CsvLog, cosine_lr, load_training_images, prepare_out, run_meta, seed_everything

RefFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class VifaTrainingError(UserError):
    """The VIFA training configuration cannot be run (missing teacher, unknown reference kind...)."""


# ---------------------------------------------------------------------- references


class RefContext:
    """What reference builders may need besides the spec and the teacher."""

    def __init__(self, cfg: TrainVifaConfig, images: list[np.ndarray], progress: bool) -> None:
        self.cfg, self.images, self.progress = cfg, images, progress
        self.weights: dict[str, dict] = {}  # task -> reference checkpoint actually used (for evaluation)


#: kind -> builder(spec, teacher, ctx) -> (reference callable, description)
REFERENCES: dict[str, Callable[[dict, VFN, RefContext], tuple[RefFn, str]]] = {}


def register_reference(kind: str, builder: Callable[[dict, VFN, RefContext], tuple[RefFn, str]]) -> None:
    """Make ``reference: <kind>`` available to VIFA task specs."""
    REFERENCES[kind] = builder


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _ref_teacher(spec: dict, teacher: VFN, ctx: RefContext) -> tuple[RefFn, str]:  # noqa: ARG001
    ctx.weights[spec["name"]] = {"kind": "teacher", "path": ctx.cfg.teacher}
    return (lambda thermal, y: teacher(thermal, y)), "teacher generic output"


def _ref_vfn(spec: dict, teacher: VFN, ctx: RefContext) -> tuple[RefFn, str]:  # noqa: ARG001
    path = resolve(spec.get("weights", ""))
    if not path.is_file():
        raise FileNotFoundError(f"reference VFN {path} not found")
    net = _frozen(checkpoint.load_vfn(path))
    ctx.weights[spec["name"]] = {"kind": "vfn", "path": str(spec["weights"])}
    return (lambda thermal, y: net(thermal, y)), f"VFN {spec['weights']} (sha256 {checkpoint.file_sha256(path)[:12]})"


def _ref_rsc(spec: dict, teacher: VFN, ctx: RefContext) -> tuple[RefFn, str]:  # noqa: ARG001
    from ..models.rsc import load_customized

    path = resolve(spec.get("weights", ""))
    if not path.is_file():
        raise FileNotFoundError(f"RSC reference {path} not found")
    net = _frozen(load_customized(path, teacher))
    task = spec.get("rsc_task", spec["name"])
    if task not in net.tasks:
        raise VifaTrainingError(f"RSC {path} has no task '{task}' (it has {list(net.tasks)}); set rsc_task")
    ctx.weights[spec["name"]] = {"kind": "rsc", "path": str(spec["weights"]), "task": task}
    return (lambda thermal, y: net(thermal, y, task)), (f"RSC {spec['weights']} task '{task}' "
                                              f"(sha256 {checkpoint.file_sha256(path)[:12]})")


def _ref_finetune(spec: dict, teacher: VFN, ctx: RefContext) -> tuple[RefFn, str]:
    """Teacher copy fine-tuned briefly with the task's fusion-loss weights."""
    cfg = ctx.cfg
    w_int, w_grad = float(spec.get("w_int", 0.2)), float(spec.get("w_grad", 1.0))
    net = copy.deepcopy(teacher).train()
    for p in net.parameters():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 + sum(map(ord, spec["name"])))
    data = CropDataset(ctx.images, cfg.crop, 1, cfg.seed + 17)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    from tqdm import tqdm

    for step in tqdm(range(cfg.finetune_steps), desc=f"reference {spec['name']}", disable=not ctx.progress):
        data.set_epoch(step)
        batch = data.random_batch(cfg.batch_size, gen)
        thermal, y = batch[:, :1], batch[:, 1:2]
        loss = fusion_loss(net(thermal, y), thermal, y, w_int, w_grad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _frozen(net)
    # kept as a 'vfn' checkpoint so the reference can be evaluated beside the head
    path = resolve(cfg.out) / f"reference_{spec['name']}.pt"
    checkpoint.save(path, "vfn", net.cfg.to_dict(), net.state_dict(),
                    {"reference_for": spec["name"], "finetune_steps": cfg.finetune_steps, "w_int": w_int,
                     "w_grad": w_grad, "teacher": cfg.teacher})
    ctx.weights[spec["name"]] = {"kind": "vfn", "path": str(path)}
    return (lambda thermal, y: net(thermal, y)), (f"teacher fine-tuned {cfg.finetune_steps} steps with fusion loss "
                                        f"w_int={w_int}, w_grad={w_grad} (saved as {path.name})")


register_reference("teacher", _ref_teacher)
register_reference("vfn", _ref_vfn)
register_reference("rsc", _ref_rsc)
register_reference("finetune", _ref_finetune)


def build_references(specs: list[dict], teacher: VFN, ctx: RefContext) -> tuple[dict[str, RefFn], dict[str, str]]:
    """Reference callable and a description per task (falling back where the spec allows)."""
    refs, notes = {}, {}
    for spec in specs:
        kind = spec.get("reference", "teacher")
        if kind not in REFERENCES:
            raise VifaTrainingError(f"task '{spec['name']}': unknown reference '{kind}' (known: {sorted(REFERENCES)})")
        try:
            refs[spec["name"]], notes[spec["name"]] = REFERENCES[kind](spec, teacher, ctx)
        except (FileNotFoundError, checkpoint.CheckpointError) as e:
            fb = spec.get("fallback")
            if not fb:
                raise VifaTrainingError(f"task '{spec['name']}': reference '{kind}' unavailable ({e}); "
                                        "train it or set a 'fallback' kind") from e
            if fb not in REFERENCES:
                raise VifaTrainingError(f"task '{spec['name']}': unknown fallback '{fb}'") from e
            refs[spec["name"]], note = REFERENCES[fb](spec, teacher, ctx)
            notes[spec["name"]] = f"FALLBACK ({kind} unavailable: {e}): {note}"
    return refs, notes


def task_specs(cfg: TrainVifaConfig) -> list[dict]:
    """Validated task mappings (name required, unique)."""
    known = {"name", "reference", "weights", "rsc_task", "fallback", "w_int", "w_grad"}
    specs = []
    for i, t in enumerate(cfg.tasks):
        if not isinstance(t, dict) or not t.get("name"):
            raise VifaTrainingError(f"tasks[{i}] must be a mapping with a 'name', got {t!r}")
        unknown = set(t) - known
        if unknown:
            raise VifaTrainingError(f"tasks[{i}] ({t['name']}): unknown keys {sorted(unknown)}; known: {sorted(known)}")
        specs.append(dict(t))
    names = [s["name"] for s in specs]
    if not names or len(set(names)) != len(names):
        raise VifaTrainingError(f"tasks must be a non-empty list of unique names, got {names}")
    return specs


# ---------------------------------------------------------------------- losses


def key_channel_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, channels: list[int],
                     weights: list[float]) -> torch.Tensor:
    """``sum_k w_k * mean((s_k - t_k)^2)`` over the key channels (teacher detached)."""
    idx = torch.as_tensor(channels, dtype=torch.long, device=student_feat.device)
    w = torch.as_tensor(weights, dtype=student_feat.dtype, device=student_feat.device)
    d = (student_feat.index_select(1, idx) - teacher_feat.detach().index_select(1, idx)) ** 2
    return (d.mean((0, 2, 3)) * w).sum()


def vifa_losses(student: MultiHeadFusion, thermal: torch.Tensor, y: torch.Tensor, teacher_feat: torch.Tensor,
                refs: dict[str, torch.Tensor], selection: KeyChannelSelection, *, layer: str, w_key: float = 1.0,
                w_ref: float = 1.0, w_fusion: float = 0.0) -> dict[str, torch.Tensor]:
    """All loss terms of one batch: ``key``, ``ref:<t>``, ``task:<t>`` (what head t sees) and ``total``."""
    feat, shared = forward_layer(student.backbone, thermal, y, layer)
    out = {"key": w_key * key_channel_loss(feat, teacher_feat, selection.channels, selection.weights)}
    total = out["key"]
    for t, ref in refs.items():
        fused = student.head(t, shared)
        out[f"ref:{t}"] = F.mse_loss(fused, ref.detach())
        task = w_ref * out[f"ref:{t}"]
        if w_fusion > 0:
            out[f"fusion:{t}"] = fusion_loss(fused, thermal, y)
            task = task + w_fusion * out[f"fusion:{t}"]
        out[f"task:{t}"] = task
        total = total + task
    out["total"] = total
    return out


# ---------------------------------------------------------------------- selection


def _selection_images(images: list[np.ndarray], ids: list[str], n: int, side: int) -> tuple[list[torch.Tensor], list[str]]:
    """``n`` evenly spaced images (all if fewer), resized to long side ``side``: (1, 2, h, w) tensors."""
    import cv2

    n = min(n, len(images))
    idx = np.linspace(0, len(images) - 1, n).round().astype(int).tolist() if n > 1 else [0]
    out = []
    for i in idx:
        img = images[i]
        h, w = img.shape[1:]
        s = side / max(h, w)
        size = (max(8, round(w * s)), max(8, round(h * s)))
        small = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in img])
        out.append(torch.from_numpy(small).float()[None] / 255.0)
    return out, [ids[i] for i in idx]


def select_key_channels(teacher: VFN, teacher_id: str, images: list[np.ndarray], ids: list[str],
                        cfg: TrainVifaConfig, progress: bool = True) -> tuple[KeyChannelSelection, Path, bool]:
    """Cached key-channel selection of the teacher's ``cfg.layer``."""
    opts = SelectionOptions(layer=cfg.layer, threshold=cfg.threshold, linkage=cfg.linkage, normalise=cfg.normalise,
                            bins=cfg.bins, weighting=cfg.weighting)
    sel_imgs, sel_ids = _selection_images(images, ids, cfg.select_images, cfg.select_side)
    key = cache_key(teacher_id, opts, sel_ids, cfg.select_side)

    def feats():  # noqa: ANN202 - generator of per-image feature maps (sizes may differ)
        with torch.inference_mode():
            for t in sel_imgs:
                yield forward_layer(teacher, t[:, :1], t[:, 1:2], cfg.layer)[0]

    return select_cached(resolve(cfg.cache_dir), key, lambda: select_from_features(feats(), opts, progress),
                         source={"teacher_sha256": teacher_id[:16], "images": len(sel_ids),
                                 "side": cfg.select_side}, progress=progress)


# ---------------------------------------------------------------------- training


def train(cfg: TrainVifaConfig, progress: bool = True, images: list[np.ndarray] | None = None,
          ids: list[str] | None = None, teacher: VFN | None = None) -> Path:
    """Train the VIFA student; returns ``<out>/vifa.pt``.

    ``images`` ((2, H, W) uint8 [IR, Y]) and ``teacher`` may be given directly (tests); otherwise
    they come from the data root and ``cfg.teacher``.
    """
    from tqdm import tqdm

    seed_everything(cfg)
    device = torch.device(cfg.device)
    specs = task_specs(cfg)
    tasks = [s["name"] for s in specs]
    out = prepare_out(cfg)
    if teacher is None:
        tpath = resolve(cfg.teacher)
        if not tpath.is_file():
            raise VifaTrainingError(f"teacher {tpath} not found (train it with `ivif train fusion`)")
        teacher = checkpoint.load_vfn(tpath)
        teacher_id = checkpoint.file_sha256(tpath)
    else:
        teacher_id = _state_checksum(teacher)
    teacher = _frozen(teacher)
    if images is None:
        images, ids = load_training_images(cfg.data_root, cfg.datasets, cfg.max_side, progress)
    ids = ids or [str(i) for i in range(len(images))]
    t0 = time.time()
    cpu0 = time.process_time()

    selection, sel_path, cached = select_key_channels(teacher, teacher_id, images, ids, cfg, progress)
    (out / "key_channels.md").write_text(sel_path.with_suffix(".md").read_text()
                                         if sel_path.with_suffix(".md").is_file() else "")
    t_select = time.time() - t0
    ref_ctx = RefContext(cfg, images, progress)
    refs, ref_notes = build_references(specs, teacher, ref_ctx)
    t_refs = time.time() - t0 - t_select

    student = build_student(copy.deepcopy(teacher), tasks).to(device)
    for p in student.parameters():
        p.requires_grad_(True)
    student.backbone.decoder.head.requires_grad_(False)  # the generic head is not part of the student
    if not cfg.train_backbone:
        student.backbone.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    data = CropDataset(images, cfg.crop, 1, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    cols = ["key", *[f"ref:{t}" for t in tasks]]
    log = CsvLog(out / "log.csv", ["step", "lr", "total", *cols, "seconds"])
    student.train()
    bar = tqdm(range(cfg.steps), desc="train vifa", disable=not progress, unit="step")
    t_train = time.time()
    for step in bar:
        data.set_epoch(step)
        batch = data.random_batch(cfg.batch_size, gen).to(device)
        thermal, y = batch[:, :1], batch[:, 1:2]
        with torch.no_grad():
            t_feat = forward_layer(teacher, thermal, y, cfg.layer)[0]
            ref_out = {t: refs[t](thermal, y) for t in tasks}
        lr = cosine_lr(step, cfg.steps, cfg.lr)  # no warm-up: the student starts from the teacher
        for g in opt.param_groups:
            g["lr"] = lr
        losses = vifa_losses(student, thermal, y, t_feat, ref_out, selection, layer=cfg.layer, w_key=cfg.w_key,
                             w_ref=cfg.w_ref, w_fusion=cfg.w_fusion)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            log.row([step + 1, f"{lr:.6g}", f"{losses['total'].item():.6g}",
                     *[f"{losses[c].item():.6g}" for c in cols], f"{time.time() - t0:.1f}"])
        bar.set_postfix(loss=f"{losses['total'].item():.5f}")
    log.close()

    head_p, bb_p = head_parameters(student)
    meta = run_meta(
        cfg, teacher=cfg.teacher, teacher_sha256=teacher_id, references=ref_notes, reference_weights=ref_ctx.weights,
        key_channels={"layer": selection.layer, "channels": selection.channels, "clusters": selection.clusters,
                      "weights": selection.weights, "n_images": selection.n_images,
                      "cache": str(sel_path), "from_cache": cached},
        head_parameters=head_p, backbone_parameters=bb_p, head_percent_of_backbone=round(100.0 * head_p / bb_p, 3),
        pairs=len(images), pair_ids_head=ids[:5], steps=cfg.steps,
        seconds={"selection": round(t_select, 1), "references": round(t_refs, 1),
                 "training": round(time.time() - t_train, 1), "cpu_total": round(time.process_time() - cpu0, 1)},
        final_losses={k: round(v.item(), 6) for k, v in losses.items()})
    return save_vifa(out / "vifa.pt", student.cpu().eval(), meta, layer=cfg.layer)


def _state_checksum(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
