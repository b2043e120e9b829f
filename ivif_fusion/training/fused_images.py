"""The fused-image cache of task training: fused images of the labelled shared pairs, made once.

:func:`build_yolo_dataset` writes (or reuses) one folder per (fusion mode, datasets, box set,
classes, backbone weights' SHA-256, held-out fold) under ``cfg.cache_dir``: ``images/{train,val}``
(fused RGB PNG) and ``labels/{train,val}`` (YOLO boxes), plus ``data.yaml`` for ultralytics.
MSRS train range -> ``train``, val range -> ``val``; LLVIP (training only) -> ``train``. The MSRS
eval-20 pairs and the guard band are never written. Detection trains on the folder through
ultralytics; segmentation reads the same images and pairs them with masks by name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..train_config import TrainTaskConfig
from ..data.shared import labelled, open_shared, split_items
from ..data.splits import cross_fit_fold, parse_fold
from ..errors import UserError
from ..paths import require_data_root, resolve
from ..tasks.inputs import make_fuser


class TaskTrainingError(UserError):
    """The task-training request cannot be served with this data/config."""


def dataset_classes(root: Path, dataset: str) -> list[str]:
    """Class names of a shared dataset (its ``labels_det/classes.txt``)."""
    classes = open_shared(root, dataset).source_classes
    if not classes:
        raise TaskTrainingError(f"{dataset}: no labels_det/classes.txt under {root / dataset}")
    return list(classes)


def build_yolo_dataset(cfg: TrainTaskConfig, classes: list[str], progress: bool = True) -> Path:
    """Write (or reuse) the ultralytics dataset folder of fused images; returns its data.yaml."""
    import cv2
    from tqdm import tqdm

    from ..models.checkpoint import file_sha256

    root = require_data_root(cfg.data_root or None)
    key = {"fusion": cfg.fusion, "datasets": list(cfg.datasets), "label_set": cfg.label_set, "classes": classes,
           "v": 2}
    if cfg.fusion == "vfn":
        w = resolve(cfg.fusion_weights)
        key["vfn_sha256"] = file_sha256(w) if w.is_file() else "missing"
    holdout = None
    if cfg.holdout_fold:
        try:
            holdout = parse_fold(cfg.holdout_fold)
        except ValueError as e:
            raise TaskTrainingError(str(e)) from e
        key["holdout_fold"] = list(holdout)
        key["holdout_scope"] = "train+val"  # the held-out fold is neither trained on nor selects the epoch
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    out = resolve(cfg.cache_dir) / f"{cfg.fusion}-{digest}"
    data_yaml = out / "data.yaml"
    if data_yaml.is_file() and (out / "done").is_file():
        return data_yaml
    fuse = make_fuser(cfg.fusion, cfg.fusion_weights, cfg.device)
    jobs = []  # (reader, dataset, item, split)
    for ds in cfg.datasets:
        if not (root / ds).is_dir():
            raise TaskTrainingError(f"dataset '{ds}' not found under {root}")
        reader = open_shared(root, ds, label_set=cfg.label_set, classes=classes, resize_mismatched=True)
        for split in ("train", "val"):
            items = labelled(reader, split_items(reader, ds, split))
            if holdout is not None:  # the held-out fold is judged by this network: never trained on nor selected on
                items = [it for it in items if cross_fit_fold(it.file, holdout[1]) != holdout[0]]
            jobs += [(reader, ds, it, split) for it in items]
    if jobs and not any(j[3] == "val" for j in jobs):
        # no MSRS val range (e.g. LLVIP only): the last 20 % of frames (consecutive, by name) select the epoch
        k = max(1, len(jobs) // 5)
        jobs = jobs[:-k] + [(r, ds, it, "val") for r, ds, it, _ in jobs[-k:]]
    if not any(j[3] == "train" for j in jobs) or not any(j[3] == "val" for j in jobs):
        raise TaskTrainingError(f"need labelled pairs for training and validation; datasets {cfg.datasets}")
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for reader, ds, it, split in tqdm(jobs, desc=f"fusing ({cfg.fusion})", disable=not progress, unit="pair"):
        stem = f"{ds}_{it.name}"
        s = reader.load(it)
        rgb = fuse(s.thermal, s.visible)
        cv2.imwrite(str(out / "images" / split / f"{stem}.png"),
                    np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)[..., ::-1])
        lines = yolo_lines(reader, it)
        (out / "labels" / split / f"{stem}.txt").write_text("".join(ln + "\n" for ln in lines))
    import yaml

    data_yaml.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val",
                                         "names": dict(enumerate(classes))}, sort_keys=False))
    counts: dict[str, dict[str, int]] = {}
    for _, ds, _, split in jobs:
        counts.setdefault(ds, {"train": 0, "val": 0})[split] += 1
    (out / "key.json").write_text(json.dumps({**key, "counts": counts}, indent=1))
    (out / "done").write_text("")
    return data_yaml


def yolo_lines(reader, item) -> list[str]:  # noqa: ANN001 - a FlatReader and one of its items
    """The YOLO label lines of a cached training image: classes mapped, coordinates as in the label file."""
    return [f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}" for c, cx, cy, bw, bh in reader.yolo_rows(item)]
