"""What both RSC variants share: config, errors, descriptors, basis selection, the task code.

RSC (:mod:`.rsc`) customizes the per-modality encoder features of the vfn backbone;
context RSC (:mod:`.rsc_context`) customizes the wide low-resolution context map of vfn2. Both
select bases from one shared bank per sample with the same machinery: a task code (learned
embedding + projected task descriptor), an image descriptor pooled from the customized
features, an interaction block turning the two into one query per branch, and a softmax (or
straight-through top-k) over the bank's keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..ops import check_shape

PROTOTYPES: tuple[tuple[int, int], ...] = ((1, 1), (3, 1), (3, 2), (3, 3))
SELECTIONS = ("cosine", "dot")


class RSCError(UserError, ValueError):
    """An RSC input (task name, descriptor, features, backbone) does not fit the module."""


@dataclass(frozen=True)
class RSCConfig:
    """Everything needed to rebuild an RSC of either variant (stored in its checkpoints)."""

    width: int = 8                                   # channels of the customized features (vfn width, vfn2 channels)
    tasks: tuple = ("detection",)                    # task names, index = embedding row
    descriptor_dims: dict = field(default_factory=dict)  # task -> C of its features (empty: embedding only)
    num_bases: int = 16                              # B, size of the shared bank
    prototypes: tuple = PROTOTYPES                   # (kernel size, dilation) per branch
    hidden: int = 32                                 # interaction block width
    query_dim: int = 16                              # query/key dimension
    temperature: float = 1.0                         # softmax temperature of basis selection
    top_k: int = 0                                   # 0: soft selection; k: hard top-k + straight-through
    gumbel: bool = True                              # Gumbel noise on selection logits, training mode only
    desc_momentum: float = 0.01                      # EMA rate of the stored mean descriptor
    arch: str = "vfn"                                # backbone architecture customized (checkpoints before vfn2: vfn)
    rank: int = 16                                   # vfn2 context RSC: channels of its low-rank residual (vfn: unused)
    selection: str = "cosine"                        # selection logits: cosine of query and key, or raw dot product

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["prototypes"] = [list(p) for p in self.prototypes]
        d["descriptor_dims"] = dict(self.descriptor_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RSCConfig":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown RSC config keys: {sorted(unknown)}")
        if "tasks" in d:
            d["tasks"] = tuple(d["tasks"])
        if "prototypes" in d:
            d["prototypes"] = tuple(tuple(int(v) for v in p) for p in d["prototypes"])
        if "descriptor_dims" in d:
            d["descriptor_dims"] = {str(k): int(v) for k, v in d["descriptor_dims"].items()}
        d.setdefault("selection", "dot")  # checkpoints written before the key select by dot product
        if d["selection"] not in SELECTIONS:
            raise ValueError(f"RSC selection must be one of {SELECTIONS}, got {d['selection']!r}")
        return cls(**d)


def task_dims(tasks: tuple, descriptor_dim: int | dict | None) -> dict:
    """task -> descriptor channels, from one int for all tasks, a dict, or None/0 (no descriptors)."""
    if isinstance(descriptor_dim, dict):
        return {str(t): int(descriptor_dim[t]) for t in tasks if descriptor_dim.get(t)}
    if descriptor_dim:
        return {t: int(descriptor_dim) for t in tasks}
    return {}


def check_tasks(tasks: tuple) -> None:
    if not tasks or len(set(tasks)) != len(tasks):
        raise RSCError(f"RSC needs unique task names, got {list(tasks)}")


def pool_descriptor(features: torch.Tensor) -> torch.Tensor:
    """Task descriptor (N, C) from a task network's (N, C, h, w) feature map: global average pooling."""
    if features.ndim == 2:
        return features
    check_shape(features, 4, "pool_descriptor features")
    return features.mean((2, 3))


def image_descriptor(f: torch.Tensor) -> torch.Tensor:
    """(N, 2C) mean and max of encoder features over space: what the image 'looks like' to the backbone."""
    return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)


def select_bases(logits: torch.Tensor, temperature: float, top_k: int = 0, noise: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Basis weights (..., B) summing to 1 from selection logits (..., B).

    Soft selection (``top_k == 0``): softmax. Hard selection (``top_k`` in 1..B-1): the top-k
    softmax weights renormalised in the forward pass, the full softmax's gradient in the
    backward pass (straight-through), so unselected bases still learn. ``noise`` adds Gumbel
    noise (training only; callers pass ``noise=False`` in eval mode, making it deterministic).
    """
    if noise:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        gumbel = -torch.log((-torch.log(u.clamp_min(1e-9))).clamp_min(1e-9))
        logits = logits + gumbel
    soft = torch.softmax(logits / temperature, -1)
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return soft
    idx = soft.topk(top_k, -1).indices
    hard = torch.zeros_like(soft).scatter(-1, idx, soft.gather(-1, idx))
    hard = hard / hard.sum(-1, keepdim=True)
    return hard + soft - soft.detach()


def selection_logits(queries: torch.Tensor, keys: torch.Tensor, cfg: RSCConfig) -> torch.Tensor:
    """Logits (..., B) of every basis for each query (..., query_dim), keys (B, query_dim).

    ``cosine`` (default): ``sqrt(query_dim) * cos(query, key)``, bounded by +-sqrt(query_dim), so
    the softmax keeps a gradient and the task code keeps its say. ``dot`` (checkpoints before the
    key): ``query . key / sqrt(query_dim)``, unbounded: a growing query saturates the softmax into
    one fixed basis per branch, the same for every task, and the selection stops learning.
    """
    scale = math.sqrt(cfg.query_dim)
    if cfg.selection == "dot":
        return queries @ keys.t() / scale
    return scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).t()


class InteractionBlock(nn.Module):
    """Task code x image descriptor -> one query per branch (N, M, query_dim)."""

    def __init__(self, width: int, hidden: int, branches: int, query_dim: int) -> None:
        super().__init__()
        self.img = nn.Linear(2 * width, hidden)
        self.mix = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Linear(hidden, branches * query_dim))
        self.branches, self.query_dim = branches, query_dim

    def forward(self, task_code: torch.Tensor, img_desc: torch.Tensor) -> torch.Tensor:
        i = self.img(img_desc)
        q = self.mix(torch.cat([task_code, i, task_code * i], 1))
        return q.view(-1, self.branches, self.query_dim)


class TaskCoded(nn.Module):
    """Base of both RSC variants: ``cfg`` (:class:`RSCConfig`), the task embedding, the task
    descriptor projections and their stored means (``desc_mean_<task>`` buffers)."""

    cfg: RSCConfig

    def build_task_code(self) -> None:
        cfg = self.cfg
        self.task_embed = nn.Parameter(torch.randn(len(cfg.tasks), cfg.hidden) * 0.5)
        self.desc_proj = nn.ModuleDict({t: nn.Linear(dim, cfg.hidden) for t, dim in cfg.descriptor_dims.items()})
        for t, dim in cfg.descriptor_dims.items():
            self.register_buffer(f"desc_mean_{t}", torch.zeros(dim))

    @property
    def tasks(self) -> tuple:
        return self.cfg.tasks

    def desc_mean(self, task: str) -> torch.Tensor:
        """Stored mean task descriptor (EMA over training), used when none is given."""
        return getattr(self, f"desc_mean_{task}")

    def task_code(self, task: str, n: int, task_descriptor: torch.Tensor | None) -> torch.Tensor:
        """(N, hidden): learned task embedding + projection of the task descriptor (when the task has one)."""
        if task not in self.cfg.tasks:
            raise RSCError(f"RSC has no task '{task}'; it was built for {list(self.cfg.tasks)}")
        code = self.task_embed[self.cfg.tasks.index(task)].unsqueeze(0).expand(n, -1)
        if task not in self.cfg.descriptor_dims:
            return code
        if task_descriptor is None:
            desc = self.desc_mean(task).unsqueeze(0).expand(n, -1)
        else:
            desc = pool_descriptor(task_descriptor)
            dim = self.cfg.descriptor_dims[task]
            if desc.shape[1] != dim or desc.shape[0] not in (1, n):
                raise RSCError(f"task '{task}' descriptor has shape {tuple(desc.shape)}, expected ({n}, {dim})")
            desc = desc.expand(n, -1)
            if self.training:  # running mean used at inference when no descriptor is passed
                with torch.no_grad():
                    self.desc_mean(task).lerp_(desc.detach().mean(0).to(self.desc_mean(task)), self.cfg.desc_momentum)
        return code + self.desc_proj[task](desc)


class CustomizedBackbone(nn.Module):
    """Base of backbone + RSC (both variants): ``encode`` once per pair returns a pair of parts,
    ``customize(*parts, task, desc)`` returns the customized parts, ``fuse_decode(*parts)`` the fused Y."""

    backbone: nn.Module
    rsc: TaskCoded

    @property
    def tasks(self) -> tuple:
        return self.rsc.tasks

    def forward(self, thermal: torch.Tensor, y: torch.Tensor, task: str,
                task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """The task's fused Y (N, 1, H, W)."""
        return self.fuse_decode(*self.customize(*self.encode(thermal, y), task, task_descriptor))

    def forward_tasks(self, thermal: torch.Tensor, y: torch.Tensor,
                      descriptors: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Fused Y per task, the shared part of the backbone run once."""
        parts = self.encode(thermal, y)
        return {t: self.fuse_decode(*self.customize(*parts, t, d)) for t, d in descriptors.items()}

    @torch.inference_mode()
    def fuse_numpy(self, thermal: np.ndarray, y: np.ndarray, task: str,
                   task_descriptor: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """Thermal and luminance (H, W) float 0..1 -> the task's fused Y (H, W) float32 (eval mode)."""
        dev = next(self.backbone.parameters()).device
        t_ir = torch.from_numpy(np.ascontiguousarray(thermal, dtype=np.float32))[None, None].to(dev)
        t_y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None].to(dev)
        desc = None if task_descriptor is None else torch.as_tensor(task_descriptor, dtype=torch.float32, device=dev)
        if desc is not None and desc.ndim == 1:
            desc = desc[None]
        was = self.training
        self.eval()
        try:
            return self(t_ir, t_y, task, desc)[0, 0].cpu().numpy()
        finally:
            self.train(was)
