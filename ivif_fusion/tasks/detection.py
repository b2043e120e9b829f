"""Object detection task: an ultralytics YOLO network built from its yaml (never a downloaded .pt).

The adapter owns pre- and post-processing so that everything is in input pixel coordinates:

- letterbox in torch (differentiable): resize so the long side is ``imgsz`` (bilinear, as
  OpenCV's INTER_LINEAR that ultralytics trains with), pad to a multiple of the network stride
  with grey 114/255, centred (ultralytics' minimal-rectangle letterbox);
- inference is plain (no test-time augmentation) and deterministic; NMS with the configured
  score / IoU thresholds; boxes are mapped back and clipped to the input image;
- ``loss`` is ultralytics' own detection criterion (v8DetectionLoss: box IoU + BCE class + DFL,
  gains 7.5 / 0.5 / 1.5) on targets given in input pixels, averaged per image;
- ``features`` runs the network only up to ``feature_layer`` (default: the SPPF output, the
  deepest backbone map, stride 32) and returns that map.

Checkpoints (kind ``task-detection``) hold the model yaml as a dict, the class names, the
thresholds and the weights, so loading builds the network offline from the checkpoint alone.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..models.checkpoint import plain
from ..types import Detection
from .base import TaskAdapter, TaskInputError, as_batch

PAD_VALUE = 114.0 / 255.0
DEFAULT_CLASSES = ("person", "bicycle", "car")


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector (stored in its checkpoint)."""

    arch: str = "yolov8n.yaml"               # ultralytics yaml name the model was built from (informative)
    classes: list = field(default_factory=lambda: list(DEFAULT_CLASSES))
    imgsz: int = 320                         # long side of the network input
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_det: int = 300
    feature_layer: int = -1                  # -1: the SPPF layer of the backbone
    model_yaml: dict = field(default_factory=dict)  # full model definition; filled at build time

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _quiet() -> contextlib.AbstractContextManager:
    """Ultralytics prints model summaries while building; keep library calls silent."""
    return contextlib.redirect_stdout(io.StringIO())


def build_yolo(cfg: DetectorConfig) -> torch.nn.Module:
    """An ultralytics ``DetectionModel`` from ``cfg.model_yaml`` (or the named yaml), nc = len(classes).

    Only the yaml shipped inside ultralytics is read; no weights are fetched. ``cfg.model_yaml``
    is filled in so that a checkpoint does not depend on the installed yaml files.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    if str(cfg.arch).endswith(".pt"):
        raise TaskInputError(f"arch '{cfg.arch}': name a model yaml (e.g. yolov8n.yaml); .pt names download weights")
    nc = len(cfg.classes)
    if nc < 1:
        raise TaskInputError("a detector needs at least one class name")
    spec: Any = copy.deepcopy(cfg.model_yaml) if cfg.model_yaml else cfg.arch
    with _quiet():
        model = DetectionModel(spec, ch=3, nc=nc, verbose=False)
    model.names = dict(enumerate(cfg.classes))
    model.args = get_cfg()  # loss gains (box 7.5, cls 0.5, dfl 1.5) read by the criterion
    cfg.model_yaml = plain(model.yaml)
    return model


@dataclass
class Letterbox:
    """How a batch was mapped into the network input: x_net = x_in * scale + left."""

    scale: float
    left: int
    top: int
    in_hw: tuple[int, int]
    net_hw: tuple[int, int]


def letterbox(x: torch.Tensor, imgsz: int, stride: int = 32) -> tuple[torch.Tensor, Letterbox]:
    """Resize (N, 3, H, W) so the long side is ``imgsz`` and pad to a multiple of ``stride`` (differentiable)."""
    h, w = x.shape[-2:]
    r = imgsz / max(h, w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    ph, pw = math.ceil(nh / stride) * stride, math.ceil(nw / stride) * stride
    top, left = (ph - nh) // 2, (pw - nw) // 2
    if (ph, pw) != (nh, nw):
        x = F.pad(x, (left, pw - nw - left, top, ph - nh - top), value=PAD_VALUE)
    return x, Letterbox(nw / w, left, top, (h, w), (ph, pw))


def _targets_tensor(targets: Sequence[Any], lb: Letterbox, n: int, device: torch.device) -> dict:
    """Per-image (K, 5) [class, x1, y1, x2, y2] input pixels -> ultralytics batch dict (normalized xywh)."""
    if len(targets) != n:
        raise TaskInputError(f"{n} images but {len(targets)} target arrays")
    idx, cls, boxes = [], [], []
    ph, pw = lb.net_hw
    for i, t in enumerate(targets):
        a = torch.as_tensor(np.asarray(t, dtype=np.float32) if not isinstance(t, torch.Tensor) else t,
                            dtype=torch.float32).reshape(-1, 5)
        if len(a) == 0:
            continue
        x1, y1 = a[:, 1] * lb.scale + lb.left, a[:, 2] * lb.scale + lb.top
        x2, y2 = a[:, 3] * lb.scale + lb.left, a[:, 4] * lb.scale + lb.top
        boxes.append(torch.stack([(x1 + x2) / 2 / pw, (y1 + y2) / 2 / ph, (x2 - x1) / pw, (y2 - y1) / ph], 1))
        cls.append(a[:, 0])
        idx.append(torch.full((len(a),), float(i)))
    if boxes:
        b, c, k = torch.cat(boxes), torch.cat(cls), torch.cat(idx)
    else:
        b, c, k = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0)
    return {"batch_idx": k.to(device), "cls": c.view(-1, 1).to(device), "bboxes": b.to(device)}


class YoloDetector(TaskAdapter):
    """Detection adapter around an ultralytics YOLO ``DetectionModel`` (see module docstring)."""

    KIND = "task-detection"
    TASK = "detection"

    def __init__(self, cfg: DetectorConfig | None = None, seed: int | None = 0) -> None:
        self.cfg = cfg or DetectorConfig()
        if seed is not None:
            torch.manual_seed(seed)
        self.model = build_yolo(self.cfg)
        self.model.eval()
        self._meta: dict = {}
        self._criterion = None
        layer = self.cfg.feature_layer
        if layer < 0:
            sppf = [m.i for m in self.model.model if type(m).__name__ == "SPPF"]
            layer = sppf[-1] if sppf else len(self.model.model) - 2
        self._feature_layer = layer

    @classmethod
    def from_config_dict(cls, d: dict) -> YoloDetector:
        return cls(DetectorConfig.from_dict(d), seed=None)

    def to(self, device: torch.device | str) -> YoloDetector:
        self.model.to(device)
        self._criterion = None  # ultralytics' criterion keeps the device it was built on
        return self

    @property
    def stride(self) -> int:
        return int(self.model.stride.max())

    @property
    def feature_channels(self) -> int:
        with torch.no_grad():
            return int(self.features(torch.zeros(1, 3, 64, 64, device=self.device)).shape[1])

    # ------------------------------------------------------------------ forward pieces

    def _net_input(self, images: Any) -> tuple[torch.Tensor, Letterbox]:
        x = as_batch(images, self.device)
        return letterbox(x, self.cfg.imgsz, self.stride)

    def _raw(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def predict(self, images: Any) -> list[list[Detection]]:
        """Detections per image, in input pixels, score >= ``cfg.score_threshold``, highest score first."""
        from ultralytics.utils.nms import non_max_suppression

        with torch.no_grad():
            x, lb = self._net_input(images)
            was_training = self.model.training
            self.model.eval()
            out = self._raw(x)
            self.model.train(was_training)
            y = out[0] if isinstance(out, (tuple, list)) else out
            # no NMS time limit: a slow or busy machine must not drop images' boxes (determinism)
            dets = non_max_suppression(y, conf_thres=self.cfg.score_threshold, iou_thres=self.cfg.iou_threshold,
                                       max_det=self.cfg.max_det, nc=len(self.cfg.classes), max_time_img=1e9)
        h, w = lb.in_hw
        results = []
        for d in dets:
            d = d.detach().cpu().double().numpy()
            boxes = d[:, :4].copy()
            boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - lb.left) / lb.scale, 0, w)
            boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - lb.top) / lb.scale, 0, h)
            results.append([Detection(int(c), self.cfg.classes[int(c)], float(s), *map(float, b))
                            for b, s, c in zip(boxes, d[:, 4], d[:, 5], strict=True)])
        return results

    def loss(self, images: torch.Tensor, targets: Sequence[Any]) -> torch.Tensor:
        """Ultralytics detection loss (box + cls + dfl, per image) of targets (K, 5) [cls, x1, y1, x2, y2] pixels."""
        from ultralytics.utils.loss import v8DetectionLoss

        x, lb = self._net_input(images)
        if self._criterion is None:
            self._criterion = v8DetectionLoss(self.model)
        batch = _targets_tensor(targets, lb, x.shape[0], x.device)
        total, _ = self._criterion(self._raw(x), batch)
        return total.sum() / x.shape[0]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Output of layer ``feature_layer`` (default SPPF: (N, 256, H/32, W/32) for nano at the letterboxed size)."""
        x, _ = self._net_input(images)
        saved: list[torch.Tensor | None] = []
        for m in self.model.model:
            if m.f != -1:
                x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
            x = m(x)
            saved.append(x if m.i in self.model.save else None)
            if m.i == self._feature_layer:
                return x
        raise RuntimeError(f"feature layer {self._feature_layer} not found in the model")

    def evaluate(self, images: Sequence[Any], targets: Sequence[Any], batch_size: int = 4) -> dict:
        """COCO mAP (pycocotools) of :meth:`predict` on images with (K, 5) [cls, x1, y1, x2, y2] pixel targets."""
        from ..metrics.detection import coco_map

        if len(images) != len(targets):
            raise TaskInputError(f"{len(images)} images but {len(targets)} target arrays")
        preds: list[list[Detection]] = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            if isinstance(chunk, torch.Tensor):
                preds += self.predict(chunk)
            else:  # images of different sizes go one by one
                sizes = {np.asarray(im).shape[:2] if not isinstance(im, torch.Tensor) else tuple(im.shape[-2:])
                         for im in chunk}
                preds += self.predict(list(chunk)) if len(sizes) == 1 else [p for im in chunk for p in self.predict(im)]
        gt = [np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in targets]
        return coco_map(gt, preds, self.classes)
