"""RSC: task-customization of the VFN encoder features (after the CLDyN seed).

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
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..ops import check_shape
from .vfn import VFN, VFNConfig

PROTOTYPES: tuple[tuple[int, int], ...] = ((1, 1), (3, 1), (3, 2), (3, 3))


class RSCError(UserError, ValueError):
    """An RSC input (task name, descriptor, features) does not fit the module."""


@dataclass(frozen=True)
class RSCConfig:
    """Everything needed to rebuild an :class:`RSC` (stored in its checkpoints)."""

    width: int = 8                                   # encoder channels per modality (VFN width)
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
        return cls(**d)


def require_vfn(backbone_or_cfg: VFN | VFNConfig | dict) -> VFNConfig:
    """The :class:`VFNConfig` of a vfn backbone (model, config or config dict); RSCError for another architecture.

    RSC customizes per-modality encoder features; vfn2 mixes thermal and visible at its input
    and has none, so it cannot be customized this way.
    """
    cfg = backbone_or_cfg.cfg if isinstance(backbone_or_cfg, nn.Module) else backbone_or_cfg
    if isinstance(cfg, VFNConfig):
        return cfg
    if isinstance(cfg, dict) and cfg.get("arch", "vfn") == "vfn":
        return VFNConfig.from_dict(cfg)
    arch = cfg.get("arch") if isinstance(cfg, dict) else cfg.to_dict().get("arch", type(cfg).__name__)
    raise RSCError(f"RSC customizes the per-modality encoder features of the vfn backbone; this backbone is "
                   f"'{arch}', which mixes thermal and visible at its input and has none. "
                   "Use customization 'vifa' or 'generic' with it.")


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


class RSC(nn.Module):
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
        tasks = tuple(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise RSCError(f"RSC needs unique task names, got {list(tasks)}")
        if isinstance(descriptor_dim, dict):
            dims = {str(t): int(descriptor_dim[t]) for t in tasks if descriptor_dim.get(t)}
        elif descriptor_dim:
            dims = {t: int(descriptor_dim) for t in tasks}
        else:
            dims = {}
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
        self.task_embed = nn.Parameter(torch.randn(len(cfg.tasks), cfg.hidden) * 0.5)
        self.desc_proj = nn.ModuleDict({t: nn.Linear(dim, cfg.hidden) for t, dim in cfg.descriptor_dims.items()})
        for t, dim in cfg.descriptor_dims.items():
            self.register_buffer(f"desc_mean_{t}", torch.zeros(dim))
        self.blocks = nn.ModuleList(InteractionBlock(c, cfg.hidden, m, cfg.query_dim) for _ in range(2))
        self.gamma = nn.Parameter(torch.zeros(2, c))  # zero residual: identity at init
        self.act = nn.LeakyReLU(0.2)

    @property
    def tasks(self) -> tuple:
        return self.cfg.tasks

    # ------------------------------------------------------------------ descriptors

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

    # ------------------------------------------------------------------ forward

    def selection(self, f_ir: torch.Tensor, f_vi: torch.Tensor, task: str,
                  task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        """Basis weights (2, N, M, B): modality, sample, branch, basis."""
        n = f_ir.shape[0]
        code = self.task_code(task, n, task_descriptor)
        queries = torch.stack([blk(code, image_descriptor(f)) for blk, f in zip(self.blocks, (f_ir, f_vi))])
        logits = queries @ self.keys.t() / math.sqrt(self.cfg.query_dim)
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


class CustomizedFusion(nn.Module):
    """Backbone + RSC: ``forward(ir, y, task, task_descriptor=None) -> fused Y`` (N, 1, H, W).

    For several tasks run :meth:`encode` once, then :meth:`customize` and :meth:`fuse_decode`
    per task (:meth:`forward_tasks` does exactly that).
    """

    def __init__(self, backbone: VFN, rsc: RSC) -> None:
        super().__init__()
        require_vfn(backbone)
        if backbone.cfg.width != rsc.cfg.width:
            raise RSCError(f"RSC width {rsc.cfg.width} does not match the backbone width {backbone.cfg.width}")
        self.backbone = backbone
        self.rsc = rsc

    @property
    def tasks(self) -> tuple:
        return self.rsc.tasks

    def encode(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.encode(thermal, y)

    def customize(self, f_ir: torch.Tensor, f_vi: torch.Tensor, task: str,
                  task_descriptor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rsc(f_ir, f_vi, task, task_descriptor)

    def fuse_decode(self, f_ir: torch.Tensor, f_vi: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode(self.backbone.fuse(f_ir, f_vi))

    def forward(self, thermal: torch.Tensor, y: torch.Tensor, task: str,
                task_descriptor: torch.Tensor | None = None) -> torch.Tensor:
        f_ir, f_vi = self.encode(thermal, y)
        return self.fuse_decode(*self.customize(f_ir, f_vi, task, task_descriptor))

    def forward_tasks(self, thermal: torch.Tensor, y: torch.Tensor,
                      descriptors: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Fused Y per task, encoders run once."""
        f_ir, f_vi = self.encode(thermal, y)
        return {t: self.fuse_decode(*self.customize(f_ir, f_vi, t, d)) for t, d in descriptors.items()}

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


# ---------------------------------------------------------------------- checkpoints


def save_rsc(path, rsc: RSC, backbone_cfg: VFNConfig, meta: dict | None = None):  # noqa: ANN001, ANN201
    """Checkpoint of kind 'rsc': the RSC config and the backbone config it was trained on."""
    from . import checkpoint

    return checkpoint.save(path, "rsc", {"rsc": rsc.cfg.to_dict(), "backbone": backbone_cfg.to_dict()},
                           rsc.state_dict(), meta)


def load_rsc(path) -> tuple[RSC, dict]:  # noqa: ANN001
    """Rebuild an :class:`RSC` (eval mode) from a checkpoint; returns it and the checkpoint dict."""
    from . import checkpoint

    ckpt = checkpoint.load(path, "rsc")
    try:
        rsc = RSC.from_config(ckpt["config"]["rsc"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: RSC config unreadable ({e})") from e
    checkpoint.load_state(rsc, ckpt["state_dict"], str(path))
    return rsc.eval(), ckpt


def load_customized(path, backbone: VFN) -> CustomizedFusion:  # noqa: ANN001
    """RSC checkpoint + the (already loaded) backbone -> :class:`CustomizedFusion` in eval mode.

    Raises CheckpointError when the RSC was trained on a backbone of another configuration.
    """
    from . import checkpoint

    require_vfn(backbone)
    rsc, ckpt = load_rsc(path)
    want = ckpt["config"].get("backbone")
    if want is not None and VFNConfig.from_dict(want) != backbone.cfg:
        raise checkpoint.CheckpointError(f"{path}: RSC was trained on backbone config {want}, "
                                         f"the loaded backbone has {backbone.cfg.to_dict()}")
    return CustomizedFusion(backbone, rsc).eval()
