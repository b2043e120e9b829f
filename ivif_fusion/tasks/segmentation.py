"""Semantic segmentation task: a compact U-Net-style encoder-decoder behind the adapter interface.

The shared data holds no segmentation labels (MSRS/MFNet masks are not available here): the
network is trained on box-supervised pseudo-masks (``ivif data masks``, docs/pseudo_masks.md) by
``ivif train task --task segmentation`` (:mod:`ivif_fusion.training.segmentation`).

Network (``width`` w): three stride-2 stages (w, 2w, 4w channels; conv-BN-ReLU x2 each) after a
stem, a bottleneck at stride 8 (the task descriptor returned by ``features``), and a decoder that
upsamples bilinearly and concatenates the skip features. Inputs of any size are padded
(replicate) to a multiple of 8 and the logits cropped back, so masks have the input size.
Loss: pixel cross-entropy with ``ignore_index`` (255). Metric: mIoU from a confusion matrix
(:mod:`ivif_fusion.metrics.segmentation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .base import TaskAdapter, TaskInputError, as_batch

# MFNet / MSRS segmentation classes (index = class id), the usual label set for this domain
MSRS_SEG_CLASSES = ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")


@dataclass
class SegmenterConfig:
    """Everything needed to rebuild a segmenter (stored in its checkpoint)."""

    classes: list = field(default_factory=lambda: list(MSRS_SEG_CLASSES))
    width: int = 16
    ignore_index: int = 255

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SegmenterConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    """Encoder-decoder; ``forward`` gives logits (N, K, H, W) for H, W multiples of 8."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = _block(3, w)
        self.down1 = _block(w, 2 * w, 2)
        self.down2 = _block(2 * w, 4 * w, 2)
        self.down3 = _block(4 * w, 4 * w, 2)  # bottleneck, stride 8
        self.up2 = _block(8 * w, 2 * w)
        self.up1 = _block(4 * w, w)
        self.up0 = _block(2 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        return [s0, s1, s2, self.down3(s2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1, s2, b = self.encode(x)

        def up(a: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return torch.cat([F.interpolate(a, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)

        d = self.up2(up(b, s2))
        d = self.up1(up(d, s1))
        d = self.up0(up(d, s0))
        return self.head(d)


def _pad8(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class SmallSegmenter(TaskAdapter):
    """Segmentation adapter around :class:`SmallUNet` (see module docstring)."""

    KIND = "task-segmentation"
    TASK = "segmentation"

    def __init__(self, cfg: SegmenterConfig | None = None, seed: int | None = 0) -> None:
        self.cfg = cfg or SegmenterConfig()
        if len(self.cfg.classes) < 2:
            raise TaskInputError("a segmenter needs at least two classes")
        if seed is not None:
            torch.manual_seed(seed)
        self.model = SmallUNet(len(self.cfg.classes), self.cfg.width).eval()
        self._meta: dict = {}

    @classmethod
    def from_config_dict(cls, d: dict) -> SmallSegmenter:
        return cls(SegmenterConfig.from_dict(d), seed=None)

    @property
    def feature_channels(self) -> int:
        return 4 * self.cfg.width

    def logits(self, images: Any) -> torch.Tensor:
        """(N, K, H, W) class logits at the input size."""
        x, (h, w) = _pad8(as_batch(images, self.device))
        return self.model(x)[..., :h, :w]

    def predict(self, images: Any) -> list[np.ndarray]:
        """(H, W) uint8 class-id mask per image."""
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            out = self.logits(images).argmax(1)
            self.model.train(was_training)
        return [m.to(torch.uint8).cpu().numpy() for m in out]

    def _targets(self, targets: Any, n: int, hw: tuple[int, int]) -> torch.Tensor:
        t = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.stack([np.asarray(m) for m in targets]))
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.shape != (n, *hw):
            raise TaskInputError(f"masks must be (N, H, W) = {(n, *hw)}, got {tuple(t.shape)}")
        return t.long().to(self.device)

    def loss(self, images: torch.Tensor, targets: Any) -> torch.Tensor:
        """Mean pixel cross-entropy against (N, H, W) class-id masks (``ignore_index`` skipped)."""
        logits = self.logits(images)
        t = self._targets(targets, logits.shape[0], tuple(logits.shape[-2:]))
        return F.cross_entropy(logits, t, ignore_index=self.cfg.ignore_index)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Bottleneck map (N, 4*width, ceil(H/8), ceil(W/8))."""
        x, _ = _pad8(as_batch(images, self.device))
        return self.model.encode(x)[-1]

    def evaluate(self, images: Sequence[Any], targets: Sequence[Any], batch_size: int = 4) -> dict:
        """mIoU, per-class IoU and pixel accuracy from a confusion matrix over all images.

        ``mIoU``: mean over every class with pixels (MFNet convention, background included);
        ``mIoU_objects``: mean over the classes other than 0 (the background), which dominates the
        pixels and would hide how well the objects are segmented.
        """
        from ..metrics.segmentation import confusion_matrix, miou, pixel_accuracy

        if len(images) != len(targets):
            raise TaskInputError(f"{len(images)} images but {len(targets)} masks")
        k = len(self.cfg.classes)
        conf = np.zeros((k, k), dtype=np.int64)
        for i in range(len(images)):
            pred = self.predict(images[i] if not isinstance(images, torch.Tensor) else images[i:i + 1])[0]
            confusion_matrix(pred, np.asarray(targets[i]), k, self.cfg.ignore_index, conf)
        m, per = miou(conf)
        m_objects, _ = miou(conf, range(1, k))
        return {"mIoU": m, "mIoU_objects": m_objects, "IoU": {n: float(v) for n, v in zip(self.cfg.classes, per, strict=True)},
                "pixel_accuracy": pixel_accuracy(conf), "images": len(images)}
