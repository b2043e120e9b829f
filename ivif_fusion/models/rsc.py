"""RSC: task-customization of the backbone features (after the CLDyN seed); here the vfn variant.

Two variants share one config (:class:`RSCConfig`, whose ``arch`` names the backbone
architecture), the task code, the selection and the checkpoint format: :class:`RSC` below
customizes vfn's per-modality encoder features, :class:`ContextRSC`
(:mod:`ivif_fusion.models.rsc_context`) customizes vfn2's context map. vfn2 mixes the
modalities at its input, so it has no per-modality features; its context map z (96 channels at
1/4 resolution, after the residual blocks) is where its capacity is, and customizing it leaves
only the short tail (``up``, pixel shuffle, decoder, head) to run per task. At 96 channels a
bank of full 3x3 kernels would be 16 x 83 k parameters, so ContextRSC's bank holds pointwise
bases applied after static depthwise prototypes (depthwise-separable dynamic convs).
:func:`make_rsc` and :func:`customized_fusion` pick the variant; checkpoints record the
``arch`` and :func:`load_customized` refuses a backbone of another one (a UserError).

Where it sits: ``VFN.encode(ir, y) -> (f_ir, f_vi)`` runs once per pair; for each task,
``RSC`` returns customized ``(f_ir', f_vi')`` and the backbone's own ``fuse`` + ``decode`` turn
them into that task's fused Y (:class:`CustomizedFusion`).

Structure (docs/rsc.md has the full description and the cost budget):

- **Shared basis bank**: ``B`` (default 16) 3x3 kernels of shape (C, C, 3, 3), C = the encoder
  width, initialised orthogonal (the B flattened kernels are orthonormal, then scaled to a
  Kaiming-like magnitude). Both modalities and all branches draw from this one bank.
- **Branches**: M = 4 kernel prototypes ``(k, d)`` = (kernel size, dilation):
  (1,1), (3,1), (3,2), (3,3). A 3x3 prototype uses the bank kernels as they are, with its
  dilation; the 1x1 prototype uses each basis' spatial sum / 3 (its response to a flat
  region, scaled to keep the magnitude). Dilations 1, 2, 3 match the backbone's dense blocks.
- **Adaptive interaction block** per modality: a task code (a learned per-task embedding, plus a
  projection of the pooled task-network features when a task descriptor is given) and an
  image descriptor (mean- and max-pooled encoder features of that modality) are combined
  (``[t, i, t*i]`` through an MLP) into one query per branch. Query-key similarities over the
  bank's keys give the basis weights; the weighted sum of the bases is the branch's dynamic
  kernel for that sample.
- **Selection**: softmax over the bases (soft selection, exact gradients); optionally a
  hard top-k forward with a straight-through softmax gradient (``top_k > 0``). Either way every
  basis, key and query parameter receives gradient.
- **Noise**: Gumbel noise on the selection logits only in training mode (``gumbel``);
  eval mode is deterministic.
- **Cost**: kernels are assembled from pooled (N, .) descriptors, so the only
  full-resolution work is M dynamic C->C convs per modality, run as ONE grouped conv per branch
  over the whole batch and both modalities ((2N, C, H, W) -> (1, 2NC, H, W), groups = 2N).
- **Output**: ``f' = f + gamma * mean_m LeakyReLU(conv_m(f))`` with a per-channel ``gamma``
  initialised to zero, so an untrained RSC returns the backbone's features exactly.

Task descriptor: :func:`pool_descriptor` of ``TaskAdapter.features`` on the generic fused image
(N, C_t) or the map itself (pooled here). Without one, the task's stored mean descriptor
(``desc_mean``, an EMA of the training descriptors) stands in, or nothing when the RSC has no
descriptor input (``descriptor_dims`` empty): then the learned embedding alone names the task.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops import check_shape
from .rsc_context import ContextCustomizedFusion, ContextRSC
from .rsc_core import (PROTOTYPES, CustomizedBackbone, InteractionBlock, RSCConfig, RSCError, TaskCoded, check_tasks,
                       image_descriptor, pool_descriptor, select_bases, selection_logits, task_dims)
from .vfn import VFN, VFNConfig
from .vfn2 import VFN2, VFN2Config

__all__ = ["PROTOTYPES", "RSC", "ContextCustomizedFusion", "ContextRSC", "CustomizedFusion", "RSCConfig", "RSCError",
           "customized_fusion", "dynamic_conv", "image_descriptor", "load_customized", "load_rsc", "make_rsc",
           "pool_descriptor", "require_vfn", "save_rsc", "select_bases"]

def require_vfn(backbone_or_cfg: VFN | VFNConfig | dict) -> VFNConfig:
    """The :class:`VFNConfig` of a vfn backbone (model, config or config dict); RSCError for another architecture.

    RSC customizes per-modality encoder features; vfn2 mixes thermal and visible at its input
    and has none: it is customized by :class:`ContextRSC` instead (:func:`make_rsc` picks the variant).
    """
    cfg = backbone_or_cfg.cfg if isinstance(backbone_or_cfg, nn.Module) else backbone_or_cfg
    if isinstance(cfg, VFNConfig):
        return cfg
    if isinstance(cfg, dict) and cfg.get("arch", "vfn") == "vfn":
        return VFNConfig.from_dict(cfg)
    arch = cfg.get("arch") if isinstance(cfg, dict) else cfg.to_dict().get("arch", type(cfg).__name__)
    raise RSCError(f"RSC customizes the per-modality encoder features of the vfn backbone; this backbone is "
                   f"'{arch}', which mixes thermal and visible at its input and has none. Customize it with "
                   "ContextRSC (make_rsc picks the variant for a backbone config).")


def dynamic_conv(x: torch.Tensor, kernels: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Per-sample convolution as one grouped conv over the batch.

    Args:
        x: (N, C, H, W) input.
        kernels: (N, Cout, C, k, k) one kernel per sample (k odd).
        dilation: dilation of every kernel; padding keeps H, W.
    Returns:
        (N, Cout, H, W): ``out[n] = conv2d(x[n], kernels[n])``.
    """
    check_shape(x, 4, "dynamic_conv x")
    check_shape(kernels, 5, "dynamic_conv kernels")
    n, c, h, w = x.shape
    if kernels.shape[0] != n or kernels.shape[2] != c:
        raise ValueError(f"dynamic_conv: kernels {tuple(kernels.shape)} do not fit input {tuple(x.shape)}")
    k = kernels.shape[-1]
    cout = kernels.shape[1]
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * cout, c, k, k),
                   padding=dilation * (k // 2), dilation=dilation, groups=n)
    return out.view(n, cout, h, w)


class RSC(TaskCoded):
    """Task-customization module for the VFN encoder features (see module docstring).

    Args:
        vfn_cfg: the backbone's :class:`VFNConfig` (or its dict); sets the feature width.
        tasks: task names this RSC customizes for.
        descriptor_dim: channels of each task network's ``features``: one int for all tasks,
            a dict task -> int, or None/0 for no task descriptor (learned embeddings only).
        **kwargs: other :class:`RSCConfig` fields (num_bases, hidden, top_k, gumbel, ...).
    """

    def __init__(self, vfn_cfg: VFNConfig | dict | None = None, tasks: list[str] | tuple = ("detection",),
                 descriptor_dim: int | dict | None = None, **kwargs) -> None:
        super().__init__()
        vfn_cfg = VFNConfig() if vfn_cfg is None else require_vfn(vfn_cfg)
        if kwargs.get("arch", "vfn") != "vfn":
            raise RSCError(f"RSC customizes the vfn backbone, got arch {kwargs['arch']!r} (use make_rsc)")
        tasks = tuple(tasks)
        check_tasks(tasks)
        dims = task_dims(tasks, descriptor_dim)
        self.cfg = RSCConfig(width=vfn_cfg.width, tasks=tasks, descriptor_dims=dims, **kwargs)
        self._build()

    @classmethod
    def from_config(cls, cfg: RSCConfig | dict) -> "RSC":
        cfg = cfg if isinstance(cfg, RSCConfig) else RSCConfig.from_dict(cfg)
        d = cfg.to_dict()
        width, tasks, dims = d.pop("width"), d.pop("tasks"), d.pop("descriptor_dims")
        d["prototypes"] = cfg.prototypes
        return cls(VFNConfig(width=width), tasks, dims, **d)

    def _build(self) -> None:
        c, cfg = self.cfg.width, self.cfg
        for k, d in cfg.prototypes:
            if k not in (1, 3) or d < 1:
                raise RSCError(f"RSC prototypes are (kernel size 1 or 3, dilation >= 1), got {(k, d)}")
        m, b = len(cfg.prototypes), cfg.num_bases
        # Shared bank, orthogonal: the B flattened kernels are orthonormal rows, scaled so each
        # element has the magnitude of a 1/sqrt(fan_in) init (fan_in = 9C).
        bank = torch.empty(b, c * c * 9)
        nn.init.orthogonal_(bank)
        self.bank = nn.Parameter((bank * math.sqrt(c)).view(b, c, c, 3, 3))
        self.keys = nn.Parameter(torch.randn(b, cfg.query_dim) / math.sqrt(cfg.query_dim))
        self.build_task_code()
        self.blocks = nn.ModuleList(InteractionBlock(c, cfg.hidden, m, cfg.query_dim) for _ in range(2))
        self.gamma = nn.Parameter(torch.zeros(2, c))  # zero residual: identity at init
        self.act = nn.LeakyReLU(0.2)

    # ------------------------------------------------------------------ forward

    def selection(self, f_ir: torch.Tensor, f_vi: torch.Tensor, task: str,
                  task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """Basis weights (2, N, M, B): modality, sample, branch, basis."""
        n = f_ir.shape[0]
        code = self.task_code(task, n, task_descriptor)
        queries = torch.stack([blk(code, image_descriptor(f)) for blk, f in zip(self.blocks, (f_ir, f_vi))])
        logits = selection_logits(queries, self.keys, self.cfg)
        return select_bases(logits, self.cfg.temperature, self.cfg.top_k, noise=self.training and self.cfg.gumbel)

    def kernels(self, weights: torch.Tensor) -> list[torch.Tensor]:
        """Dynamic kernels per branch, each (2N, C, C, k, k), from weights (2, N, M, B)."""
        two, n, m, b = weights.shape
        w = weights.reshape(two * n, m, b)
        out = []
        for j, (k, _) in enumerate(self.cfg.prototypes):
            base = self.bank if k == 3 else self.bank.sum((3, 4), keepdim=True) / 3.0
            out.append(torch.einsum("sb,bocij->socij", w[:, j], base))
        return out

    def forward(self, f_ir: torch.Tensor, f_vi: torch.Tensor, task: str,
                task_descriptor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Customized encoder features ``(f_ir', f_vi')`` for ``task``, same shapes as the inputs."""
        check_shape(f_ir, 4, "RSC f_ir", self.cfg.width)
        check_shape(f_vi, 4, "RSC f_vi", self.cfg.width)
        if f_ir.shape != f_vi.shape:
            raise RSCError(f"RSC: f_ir {tuple(f_ir.shape)} and f_vi {tuple(f_vi.shape)} differ")
        n = f_ir.shape[0]
        weights = self.selection(f_ir, f_vi, task, task_descriptor)
        x = torch.cat([f_ir, f_vi], 0)  # both modalities in one grouped conv per branch
        acc = None
        for kern, (_, d) in zip(self.kernels(weights), self.cfg.prototypes):
            y = self.act(dynamic_conv(x, kern, d))
            acc = y if acc is None else acc + y
        delta = acc / len(self.cfg.prototypes)
        g = self.gamma.view(2, 1, -1, 1, 1)
        return f_ir + g[0] * delta[:n], f_vi + g[1] * delta[n:]


class CustomizedFusion(CustomizedBackbone):
    """Backbone + RSC: ``forward(ir, y, task, task_descriptor=None) -> fused Y`` (N, 1, H, W).

    For several tasks run :meth:`encode` once, then :meth:`customize` and :meth:`fuse_decode`
    per task (:meth:`forward_tasks` does exactly that).
    """

    def __init__(self, backbone: VFN, rsc: RSC) -> None:
        super().__init__()
        require_vfn(backbone)
        if not isinstance(rsc, RSC):
            raise RSCError(f"a vfn backbone is customized by RSC, got {type(rsc).__name__}")
        if backbone.cfg.width != rsc.cfg.width:
            raise RSCError(f"RSC width {rsc.cfg.width} does not match the backbone width {backbone.cfg.width}")
        self.backbone = backbone
        self.rsc = rsc

    def encode(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.encode(thermal, y)

    def customize(self, f_ir: torch.Tensor, f_vi: torch.Tensor, task: str,
                  task_descriptor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rsc(f_ir, f_vi, task, task_descriptor)

    def fuse_decode(self, f_ir: torch.Tensor, f_vi: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode(self.backbone.fuse(f_ir, f_vi))


# ---------------------------------------------------------------------- checkpoints


def make_rsc(backbone_cfg: VFNConfig | VFN2Config, tasks: list[str] | tuple = ("detection",),
             descriptor_dim: int | dict | None = None, **kwargs) -> RSC | ContextRSC:
    """The RSC variant for a backbone's architecture: :class:`RSC` (vfn) or :class:`ContextRSC` (vfn2)."""
    if isinstance(backbone_cfg, VFN2Config):
        return ContextRSC(backbone_cfg, tasks, descriptor_dim, **kwargs)
    return RSC(backbone_cfg, tasks, descriptor_dim, **kwargs)


def customized_fusion(backbone: VFN | VFN2, rsc: RSC | ContextRSC) -> CustomizedFusion | ContextCustomizedFusion:
    """Backbone + RSC of the matching variant; RSCError when the RSC customizes another architecture."""
    want, have = rsc.cfg.arch, backbone.cfg.to_dict().get("arch", "vfn")
    if want != have:
        raise RSCError(f"this RSC customizes the '{want}' backbone; the loaded backbone is '{have}'. "
                       f"Use an RSC trained on a '{have}' backbone (`ivif train rsc --set backbone=...`).")
    return (ContextCustomizedFusion if isinstance(rsc, ContextRSC) else CustomizedFusion)(backbone, rsc)


def save_rsc(path, rsc: RSC | ContextRSC, backbone_cfg: VFNConfig | VFN2Config,  # noqa: ANN001, ANN201
             meta: dict | None = None):
    """Checkpoint of kind 'rsc': the RSC config (its ``arch`` names the backbone architecture it
    customizes) and the backbone config it was trained on."""
    from . import checkpoint

    if rsc.cfg.arch != backbone_cfg.to_dict().get("arch", "vfn"):
        raise RSCError(f"RSC for '{rsc.cfg.arch}' saved with a {type(backbone_cfg).__name__}")
    return checkpoint.save(path, "rsc", {"rsc": rsc.cfg.to_dict(), "backbone": backbone_cfg.to_dict()},
                           rsc.state_dict(), meta)


def load_rsc(path) -> tuple[RSC | ContextRSC, dict]:  # noqa: ANN001
    """Rebuild an RSC of the recorded variant (eval mode) from a checkpoint; returns it and the checkpoint dict."""
    from . import checkpoint

    ckpt = checkpoint.load(path, "rsc")
    try:
        cfg = RSCConfig.from_dict(ckpt["config"]["rsc"])
        if cfg.arch == "vfn2":
            rsc = ContextRSC.from_config(cfg, VFN2Config.from_dict(ckpt["config"]["backbone"]))
        elif cfg.arch == "vfn":
            rsc = RSC.from_config(cfg)
        else:
            raise ValueError(f"unknown backbone architecture {cfg.arch!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: RSC config unreadable ({e})") from e
    checkpoint.load_state(rsc, ckpt["state_dict"], str(path))
    return rsc.eval(), ckpt


def load_customized(path, backbone: VFN | VFN2) -> CustomizedFusion | ContextCustomizedFusion:  # noqa: ANN001
    """RSC checkpoint + the (already loaded) backbone -> customized fusion in eval mode.

    Raises CheckpointError (a UserError) when the RSC was trained on a backbone of another
    architecture or configuration.
    """
    from . import checkpoint

    have = backbone.cfg.to_dict()
    rsc, ckpt = load_rsc(path)
    if rsc.cfg.arch != have.get("arch", "vfn"):
        raise checkpoint.CheckpointError(
            f"{path}: this RSC customizes the '{rsc.cfg.arch}' backbone; the loaded backbone is "
            f"'{have.get('arch', 'vfn')}'. Use an RSC trained on this backbone (`ivif train rsc "
            "--set backbone=<its checkpoint>`), or customization 'vifa' or 'generic'.")
    want = ckpt["config"].get("backbone")
    if want is not None and {"arch": rsc.cfg.arch, **want} != {"arch": rsc.cfg.arch, **have}:
        raise checkpoint.CheckpointError(f"{path}: RSC was trained on backbone config {want}, "
                                         f"the loaded backbone has {have}")
    return customized_fusion(backbone, rsc).eval()
