"""Context RSC: task-customization of the vfn2 backbone's wide low-resolution context map.

Why here: vfn2 mixes thermal and visible at its input, so it has no per-modality encoder
features (what RSC customizes in vfn). Its task-independent work ends in the context map
``z`` (``channels`` = 96 maps at 1/``stride`` = 1/4 resolution, after the residual blocks,
before ``up`` and the pixel shuffle): it holds almost all of the backbone's capacity and
receptive field, only a short tail follows (``up``, shuffle, decoder, head), and at 1/16 of
the pixels a customization costs 16x less per channel than at full resolution.

Structure (the RSC ingredients of :mod:`.rsc`, made cheap at C = 96):

- **Low-rank residual**: ``z' = z + gamma * lift(r)``: a code r of ``rank`` R = 16 channels,
  lifted to C by a static C x R matrix, times a per-channel ``gamma`` that starts at zero, so
  an untrained context RSC reproduces vfn2 exactly.
- **Shared basis bank**: ``B`` pointwise bases, each an R x C matrix (initialised orthogonal:
  the B flattened matrices orthonormal, scaled to a 1/sqrt(C) element magnitude). A bank of
  full 3x3 C x C kernels would be 16 x 83 k parameters and 83 k MACs per low-resolution pixel
  and branch.
- **Branches**: one per prototype ``(k, d)``, default (1,1), (3,1), (3,2), (3,3): a learned
  static depthwise k x k conv with dilation d (the spatial prototype), LeakyReLU, then the
  branch's dynamic C -> R mix, the bank's bases weighted by that branch's selection. Each branch
  is thus a per-sample depthwise-separable conv; r is the mean over branches. All branch mixes
  are one batched MatMul (N, R, M C) x (N, M C, h w), which ONNX exports with N, H, W dynamic
  (vfn's RSC folds the batch into conv groups, which fixes the batch at trace time).
- **Selection**: as in RSC, one interaction block turns the task code (embedding + projected
  task descriptor) and the image descriptor (mean and max of z over space) into one query per
  branch; softmax (or straight-through top-k) over the bank's keys; Gumbel noise in training only.
- **Where the shared work ends** (:class:`ContextCustomizedFusion`): ``up`` is linear, so
  ``up(z') = up(z) + conv3x3(r, up.weight * gamma * lift)``. ``up(z)`` (96 -> 256 channels, the
  widest conv of the tail) runs once per pair with the context blocks and the detail path; per
  task the RSC adds its code through an R -> 256 conv, and the pixel shuffle, decoder and head
  make that task's fused Y.

Cost per task at 640x480 (19 200 low-resolution pixels): M (9 C + R C) + 9 R 256 MACs per
pixel, about 0.9 GMAC against vfn2's 31 GMAC; vfn2's full-resolution tail (shuffle, decoder,
head) repeated per task costs more time than the RSC in ONNX Runtime (``benchmarks/rsc_cost.md``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..ops import check_shape
from .rsc_core import (CustomizedBackbone, InteractionBlock, RSCConfig, RSCError, TaskCoded, check_tasks,
                       image_descriptor, select_bases, selection_logits, task_dims)
from .vfn2 import ARCH, VFN2, VFN2Config


class ContextRSC(TaskCoded):
    """Task-customization module for vfn2's context map z (see module docstring).

    Args:
        vfn2_cfg: the backbone's :class:`VFN2Config` (or its dict); ``channels`` sets the width.
        tasks, descriptor_dim, **kwargs: as for :class:`~ivif_fusion.models.rsc.RSC`.
    """

    def __init__(self, vfn2_cfg: VFN2Config | dict | None = None, tasks: list[str] | tuple = ("detection",),
                 descriptor_dim: int | dict | None = None, **kwargs) -> None:
        super().__init__()
        if isinstance(vfn2_cfg, dict):
            vfn2_cfg = VFN2Config.from_dict(vfn2_cfg)
        vfn2_cfg = vfn2_cfg or VFN2Config()
        if kwargs.pop("arch", ARCH) != ARCH or not isinstance(vfn2_cfg, VFN2Config):
            raise RSCError(f"context RSC customizes the vfn2 backbone, got {vfn2_cfg!r}")
        tasks = tuple(tasks)
        check_tasks(tasks)
        self.cfg = RSCConfig(width=vfn2_cfg.channels, tasks=tasks, descriptor_dims=task_dims(tasks, descriptor_dim),
                             arch=ARCH, **kwargs)
        c, r, cfg = self.cfg.width, self.cfg.rank, self.cfg
        for k, d in cfg.prototypes:
            if k < 1 or k % 2 == 0 or d < 1:
                raise RSCError(f"RSC prototypes are (odd kernel size, dilation >= 1), got {(k, d)}")
        if not 1 <= r <= c:
            raise RSCError(f"context RSC rank must be in 1..{c}, got {r}")
        b = cfg.num_bases
        bank = torch.empty(b, r * c)
        nn.init.orthogonal_(bank)
        self.bank = nn.Parameter((bank * math.sqrt(r)).view(b, r, c))  # pointwise C -> R mixes
        self.keys = nn.Parameter(torch.randn(b, cfg.query_dim) / math.sqrt(cfg.query_dim))
        self.build_task_code()
        self.spatial = nn.ModuleList(nn.Conv2d(c, c, k, padding=d * (k // 2), dilation=d, groups=c, bias=False)
                                     for k, d in cfg.prototypes)
        self.block = InteractionBlock(c, cfg.hidden, len(cfg.prototypes), cfg.query_dim)
        lift = torch.empty(c, r)
        nn.init.orthogonal_(lift)
        self.lift = nn.Parameter(lift)  # R -> C, static
        self.gamma = nn.Parameter(torch.zeros(c))  # zero residual: identity at init
        self.act = nn.LeakyReLU(0.2)

    @classmethod
    def from_config(cls, cfg: RSCConfig | dict, backbone_cfg: VFN2Config) -> "ContextRSC":
        cfg = cfg if isinstance(cfg, RSCConfig) else RSCConfig.from_dict(cfg)
        if cfg.width != backbone_cfg.channels:
            raise RSCError(f"RSC width {cfg.width} does not match the vfn2 context width {backbone_cfg.channels}")
        d = cfg.to_dict()
        tasks, dims = d.pop("tasks"), d.pop("descriptor_dims")
        del d["width"]
        d["prototypes"] = cfg.prototypes
        return cls(backbone_cfg, tasks, dims, **d)

    def selection(self, z: torch.Tensor, task: str, task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """Basis weights (N, M, B): sample, branch, basis."""
        code = self.task_code(task, z.shape[0], task_descriptor)
        logits = selection_logits(self.block(code, image_descriptor(z)), self.keys, self.cfg)
        return select_bases(logits, self.cfg.temperature, self.cfg.top_k, noise=self.training and self.cfg.gumbel)

    def code(self, z: torch.Tensor, task: str, task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """The low-rank customization code r (N, R, h, w) of z for ``task``."""
        check_shape(z, 4, "context RSC z", self.cfg.width)
        n, c, h, w = z.shape
        weights = self.selection(z, task, task_descriptor)  # (N, M, B)
        m = weights.shape[1]
        # per-sample, per-branch C -> R mixes from the shared bank, side by side: (N, R, M C)
        mix = torch.einsum("nmb,brc->nrmc", weights, self.bank).reshape(n, self.cfg.rank, m * c) / m
        branches = torch.cat([self.act(conv(z)) for conv in self.spatial], 1)  # (N, M C, h, w)
        return torch.matmul(mix, branches.reshape(n, m * c, h * w)).reshape(n, -1, h, w)

    def lifted(self) -> torch.Tensor:
        """(C, R): the code's map back to z's channels, gain included (``gamma * lift``)."""
        return self.gamma.unsqueeze(1) * self.lift

    def forward(self, z: torch.Tensor, task: str, task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """Customized context map ``z' = z + gamma * lift(r)`` for ``task``, same shape as ``z``."""
        r = self.code(z, task, task_descriptor)
        return z + torch.einsum("cr,nrhw->nchw", self.lifted(), r)


Encoded = tuple[torch.Tensor, tuple]  # up(z) before the pixel shuffle, (z, detail, thermal, y)


class ContextCustomizedFusion(CustomizedBackbone):
    """vfn2 + context RSC: ``forward(ir, y, task, task_descriptor=None) -> fused Y`` (N, 1, H, W).

    The same interface as :class:`~ivif_fusion.models.rsc.CustomizedFusion`: :meth:`encode`
    once returns ``(u, rest)`` with ``u = up(z)``; :meth:`customize` ``(u, rest, task, desc)``
    and :meth:`fuse_decode` ``(u, rest)`` per task. ``up`` is linear, so
    ``up(z') = up(z) + conv(r, up.weight * gamma * lift)``: the wide ``up`` conv (96 -> 256
    channels) runs once per pair and each task adds only an R -> 256 channel conv of its code.
    """

    def __init__(self, backbone: VFN2, rsc: ContextRSC) -> None:
        super().__init__()
        if not isinstance(backbone, VFN2) or not isinstance(rsc, ContextRSC):
            raise RSCError(f"context RSC customization needs a vfn2 backbone and a ContextRSC, got "
                           f"{type(backbone).__name__} and {type(rsc).__name__}")
        if backbone.cfg.channels != rsc.cfg.width:
            raise RSCError(f"RSC width {rsc.cfg.width} does not match the vfn2 context width {backbone.cfg.channels}")
        self.backbone = backbone
        self.rsc = rsc

    def encode(self, thermal: torch.Tensor, y: torch.Tensor) -> Encoded:
        z, detail = self.backbone.encode_context(thermal, y)
        return self.backbone.context.up(z), (z, detail, thermal, y)

    def customize(self, u: torch.Tensor, rest: tuple, task: str,
                  task_descriptor: torch.Tensor | None = None) -> Encoded:
        up = self.backbone.context.up
        r = self.rsc.code(rest[0], task, task_descriptor)
        kernel = torch.einsum("ocij,cr->orij", up.weight, self.rsc.lifted())
        return u + F.conv2d(r, kernel, padding=up.padding, dilation=up.dilation), rest

    def fuse_decode(self, u: torch.Tensor, rest: tuple) -> torch.Tensor:
        _, detail, thermal, y = rest
        return self.backbone.decoder(self.backbone.finish_context(u, detail, thermal, y))
