"""VIFA: one shared VFN backbone, one one-layer head per task (the deployment form).

The student is a :class:`~ivif_fusion.models.heads.MultiHeadFusion` whose heads are single
3x3 convs (``make_head``) on the backbone's last shared map, one per task, named after the
task. Checkpoints have kind ``'vifa'``::

    config = {"backbone": backbone config dict, "heads": [task, ...], "head": {"in_ch": 4, "kernel": 3},
              "layer": distilled layer name}
    state_dict = MultiHeadFusion.state_dict()   # backbone.* and heads.<task>.*
    meta = training config, key-channel selection, references used, ...

:func:`load_vifa` is the contract the runtime pipeline uses: ``load_vifa(path) -> (backbone in
eval mode, {task: head conv})``; with ``expected`` it also checks that the checkpoint has
exactly the expected heads (:func:`check_heads`: a clear error naming missing and extra ones).

:data:`LAYERS` names the backbone layers whose channels key-channel distillation can constrain;
:func:`forward_layer` returns a layer's map and the shared map in one backbone pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .checkpoint import CheckpointError
from .heads import GENERIC, MultiHeadFusion, make_head
from .backbones import backbone_from_config
from .vfn import VFN

KIND = "vifa"
#: layer name -> what it is (channels for the default width 8)
LAYERS = {
    "encoder": "both encoders' outputs concatenated [f_ir, f_vi] (2*width = 16 channels)",
    "fusion": "output of the gradient-attention fusion block (2*width = 16 channels)",
    "decoder": "output of the decoder's dense blocks (width = 8 channels)",
    "shared": "last shared map, input of every head (width/2 = 4 channels)",
}


def forward_layer(backbone: VFN, thermal: torch.Tensor, y: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One backbone pass returning (``layer`` map, last shared map)."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer '{layer}'; choose one of {sorted(LAYERS)}")
    if not isinstance(backbone, VFN):  # vfn2 mixes the modalities at its input: only its shared map exists
        if layer != "shared":
            raise ValueError(f"layer '{layer}' exists in the vfn backbone only; with {type(backbone).__name__} "
                             "use layer 'shared'")
        shared = backbone.shared_features(thermal, y)
        return shared, shared
    f_ir, f_vi = backbone.encode(thermal, y)
    z = backbone.fuse(f_ir, f_vi)
    dec = backbone.decoder
    d = dec.blocks(dec.inp(z))
    shared = dec.to_shared(d)
    feat = {"encoder": lambda: torch.cat([f_ir, f_vi], 1), "fusion": lambda: z, "decoder": lambda: d,
            "shared": lambda: shared}[layer]()
    return feat, shared


def build_student(backbone: VFN, tasks: Sequence[str], init_from_generic: bool = True) -> MultiHeadFusion:
    """Backbone + one head per task; heads start as copies of the generic head (same output at step 0)."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("VIFA needs at least one task")
    if len(set(tasks)) != len(tasks) or GENERIC in tasks:
        raise ValueError(f"task names must be unique and not '{GENERIC}', got {tasks}")
    in_ch = backbone.shared_channels
    heads = {}
    for t in tasks:
        h = make_head(in_ch)
        if init_from_generic:
            h.load_state_dict(backbone.decoder.head.state_dict())
        heads[t] = h
    return MultiHeadFusion(backbone, heads, head_names=tasks)


def head_parameters(model: MultiHeadFusion) -> tuple[int, int]:
    """(parameters of one head, parameters of the backbone without its generic head)."""
    head = sum(p.numel() for p in next(iter(model.heads.values())).parameters())
    bb = sum(p.numel() for n, p in model.backbone.named_parameters() if not n.startswith("decoder.head."))
    return head, bb


def save_vifa(path: str | os.PathLike, model: MultiHeadFusion, meta: dict | None = None, layer: str = "fusion") -> Path:
    """Write a 'vifa' checkpoint (config: backbone config, head names, head shape, distilled layer)."""
    tasks = [n for n in model.head_names if n != GENERIC]
    cfg = {"backbone": model.backbone.cfg.to_dict(), "heads": tasks,
           "head": {"in_ch": model.backbone.shared_channels, "kernel": 3}, "layer": layer}
    return checkpoint.save(path, KIND, cfg, model.state_dict(), meta)


def check_heads(ckpt_heads: Sequence[str], expected: Sequence[str], source: str = "VIFA checkpoint") -> None:
    """Raise :class:`CheckpointError` unless the checkpoint has exactly the ``expected`` heads."""
    have, want = list(ckpt_heads), list(expected)
    missing = [t for t in want if t not in have]
    extra = [t for t in have if t not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing head(s) {missing} for configured task(s)")
        if extra:
            parts.append(f"extra head(s) {extra} not among the configured tasks")
        raise CheckpointError(f"{source}: {'; '.join(parts)} (checkpoint heads: {have}, configured tasks: {want}); "
                              "retrain with `ivif train vifa` for these tasks or change the task list")


def load_vifa_model(path: str | os.PathLike, expected: Sequence[str] | None = None) -> MultiHeadFusion:
    """Rebuild the whole student (eval mode) from a 'vifa' checkpoint."""
    ckpt = checkpoint.load(path, KIND)
    cfg = ckpt.get("config") or {}
    try:
        backbone = backbone_from_config(cfg["backbone"])
        tasks = list(cfg["heads"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: VIFA config unreadable ({type(e).__name__}: {e})") from e
    if expected is not None:
        check_heads(tasks, expected, str(path))
    model = build_student(backbone, tasks, init_from_generic=False)
    # head names in the config and in the weights must agree: name the difference
    in_state = sorted({k.split(".")[1] for k in ckpt["state_dict"] if k.startswith("heads.")})
    if sorted(tasks) != in_state:
        raise CheckpointError(f"{path}: config lists heads {sorted(tasks)} but the weights hold heads {in_state}")
    checkpoint.load_state(model, ckpt["state_dict"], str(path))
    return model.eval()


def load_vifa(path: str | os.PathLike, expected: Sequence[str] | None = None) -> tuple[VFN, dict[str, nn.Module]]:
    """``(backbone in eval mode, {task: head conv})`` from a 'vifa' checkpoint (the pipeline's contract)."""
    model = load_vifa_model(path, expected)
    return model.backbone, {t: model.heads[t] for t in model.heads}


def model_card(path: str | os.PathLike, title: str | None = None, results: str = "docs/results_vifa.md") -> str:
    """Markdown model-card section generated from a 'vifa' checkpoint's config and meta (never retyped)."""
    p = Path(path)
    ck = checkpoint.load(p, KIND)
    cfg, meta = ck["config"], ck.get("meta", {})
    tc = meta.get("train_config", {})
    kc = meta.get("key_channels", {})
    multi = [c for c in kc.get("clusters", []) if len(c) > 1]
    lines = [f"## {title or f'VIFA: {p.name}'}", "",
             f"- Kind `vifa`: shared VFN backbone {cfg['backbone']} + one 3x3 conv head per task: "
             f"{', '.join(f'`{h}`' for h in cfg['heads'])}.",
             f"- Size: {p.stat().st_size / 1024:.0f} KiB; one head {meta.get('head_parameters')} parameters = "
             f"{meta.get('head_percent_of_backbone')} % of the backbone ({meta.get('backbone_parameters')}).",
             f"- SHA-256: `{checkpoint.file_sha256(p)}`.",
             f"- Teacher: `{meta.get('teacher')}` (sha256 {str(meta.get('teacher_sha256', ''))[:16]}); student "
             "backbone and heads initialised from it.",
             f"- Data: {', '.join(tc.get('datasets', []))} training pairs ({meta.get('pairs')}; MSRS train range "
             "only, never the eval-20 frames).",
             f"- Key channels: layer `{kc.get('layer')}`, {len(kc.get('channels', []))} key channels "
             f"{kc.get('channels')} from {len(kc.get('clusters', []))} clusters (FSIM threshold "
             f"{tc.get('threshold')}, {tc.get('linkage')} linkage, {kc.get('n_images')} images, weights "
             f"{tc.get('weighting')}); multi-member clusters: {multi or 'none'}.",
             "- References: " + "; ".join(f"`{t}`: {r}" for t, r in meta.get("references", {}).items()) + ".",
             f"- Recipe: {meta.get('steps')} steps, batch {tc.get('batch_size')} x {tc.get('crop')}^2 crops, Adam "
             f"lr {tc.get('lr')} (cosine), w_key {tc.get('w_key')}, w_ref {tc.get('w_ref')}, w_fusion "
             f"{tc.get('w_fusion')}, seed {tc.get('seed')}; time (s) {meta.get('seconds')}.",
             f"- Final losses: {meta.get('final_losses')}.",
             f"- Command: `{meta.get('command')}`.",
             f"- Results (task metric, fusion metrics, speed): [{results}](../{results}).", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- inference on one pair


@torch.inference_mode()
def head_fuse_numpy(model: MultiHeadFusion, thermal: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Fused Y (H, W) float32 of ``task``'s head for one pair: thermal (H, W) and visible Y (H, W) in 0..1."""
    t_thermal = torch.from_numpy(np.ascontiguousarray(thermal, dtype=np.float32))[None, None]
    t_y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None]
    return model.head(task, model.backbone.shared_features(t_thermal, t_y))[0, 0].numpy()
