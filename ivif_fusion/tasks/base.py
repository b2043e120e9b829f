"""The task-network interface shared by detection and segmentation.

A :class:`TaskAdapter` wraps one downstream network behind four calls:

- ``predict(images)``: plain results per image (``list[Detection]`` or an (H, W) uint8 class-id mask),
  in the pixel coordinates of the input images;
- ``loss(images, targets)``: a torch scalar, differentiable w.r.t. ``images`` (RSC and VIFA train
  fusion modules through frozen task networks with it);
- ``features(images)``: an (N, C, h, w) deep feature map, the task descriptor RSC reads;
- ``evaluate(images, targets)``: the task metric (detection: COCO mAP; segmentation: mIoU).

Images cross this interface as (N, 3, H, W) float32 RGB in 0..1 (torch), or as numpy
(H, W, 3) float 0..1 / uint8 images, one or a list (converted by :func:`as_batch`).
Adapters are frozen (``eval()``, ``requires_grad_(False)``) after :meth:`TaskAdapter.from_checkpoint`;
gradients still flow to the input images.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import UserError


class TaskInputError(UserError, ValueError):
    """Images or targets given to a task adapter have the wrong form."""


def as_batch(images: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 3, H, W) float32 0..1 tensor from a tensor, one numpy image or a list of same-size numpy images.

    Numpy images are (H, W, 3) RGB, uint8 (divided by 255) or float in 0..1; (H, W) grayscale
    is replicated to 3 channels. A (3, H, W) tensor gets a batch dimension.
    """
    if isinstance(images, torch.Tensor):
        x = images
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise TaskInputError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        if not x.is_floating_point():
            x = x.float() / 255.0
        return x.to(device, torch.float32)  # differentiable cast: float64 inputs still get gradients
    if isinstance(images, np.ndarray):
        images = [images]
    if not isinstance(images, Sequence) or not images:
        raise TaskInputError(f"expected a tensor, a numpy image or a non-empty list of them, got {type(images).__name__}")
    arrs = []
    for im in images:
        a = np.asarray(im)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != 3:
            raise TaskInputError(f"expected (H, W, 3) RGB images, got shape {a.shape}")
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
        arrs.append(a)
    if len({a.shape for a in arrs}) != 1:
        raise TaskInputError(f"images in one batch must have one size, got {sorted({a.shape for a in arrs})}")
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous().to(device)


class TaskAdapter(ABC):
    """One task network behind predict / loss / features / evaluate (see module docstring).

    Subclasses set ``KIND`` (the checkpoint kind), hold the network in ``self.model`` and their
    settings in ``self.cfg`` (a dataclass with ``to_dict``/``from_dict``).
    """

    KIND: ClassVar[str] = ""
    TASK: ClassVar[str] = ""
    model: nn.Module
    cfg: Any

    # ------------------------------------------------------------------ interface

    @abstractmethod
    def predict(self, images: Any) -> list:
        """Per-image plain results in input pixel coordinates (no gradient, deterministic)."""

    @abstractmethod
    def loss(self, images: torch.Tensor, targets: Sequence[Any]) -> torch.Tensor:
        """Scalar task loss, differentiable w.r.t. ``images`` (N, 3, H, W float 0..1)."""

    @abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) deep feature map of the network (task descriptor); keeps the autograd graph."""

    @abstractmethod
    def evaluate(self, images: Sequence[Any], targets: Sequence[Any], batch_size: int = 4) -> dict:
        """Task metric of ``predict`` over images with ground truth."""

    @property
    def classes(self) -> list[str]:
        """Class names, index = class id."""
        return list(self.cfg.classes)

    @property
    @abstractmethod
    def feature_channels(self) -> int:
        """C of :meth:`features`."""

    # ------------------------------------------------------------------ modes, device, persistence

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> TaskAdapter:
        self.model.to(device)
        return self

    def eval(self) -> TaskAdapter:
        """Inference mode (batch-norm statistics frozen)."""
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> TaskAdapter:
        self.model.train(mode)
        return self

    def freeze(self) -> TaskAdapter:
        """Eval mode and no parameter gradients: the task network is fixed, inputs still get gradients."""
        self.model.eval()
        self.model.requires_grad_(False)
        return self

    def meta(self) -> dict:
        return dict(getattr(self, "_meta", {}) or {})

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> Path:
        """Checkpoint with the adapter config inside (kind ``KIND``); ``meta`` adds training facts."""
        from ..models import checkpoint

        m = self.meta()
        m.update(meta or {})
        return checkpoint.save(path, self.KIND, self.cfg.to_dict(), self.model.state_dict(), m)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu") -> TaskAdapter:
        """Rebuild from a checkpoint of this adapter's kind, frozen (eval, no parameter grads)."""
        from ..models import checkpoint

        ckpt = checkpoint.load(path, cls.KIND)
        adapter = cls.from_config_dict(ckpt["config"])
        checkpoint.load_state(adapter.model, ckpt["state_dict"], str(path))
        adapter._meta = dict(ckpt.get("meta") or {})
        return adapter.to(device).freeze()

    @classmethod
    @abstractmethod
    def from_config_dict(cls, d: dict) -> TaskAdapter:
        """A randomly initialised adapter from its config dict."""
