"""`ivif train task`: a task network trained on fused images of the labelled shared pairs.

Detection (the only task with labels in the shared data):

1. fused images are made once per (fusion mode, datasets, VFN weights) and cached with their
   YOLO labels as an ultralytics dataset folder under ``cfg.cache_dir`` (MSRS train range ->
   ``train``, MSRS val range -> ``val``; LLVIP, when listed, -> ``train`` only, person = class 0);
   the MSRS eval-20 pairs and the guard band are never written there;
2. ultralytics' trainer trains the YOLO yaml from scratch (seeded, deterministic, workers=0,
   plots off, no downloads) and selects the best epoch on the val range;
3. the best weights are converted to our checkpoint (kind ``task-detection``) and evaluated
   with pycocotools on the val range and on MSRS eval-20; the metrics go into its ``meta``.

Segmentation (``task: segmentation``) is :mod:`ivif_fusion.training.segmentation`: the same
cached fused images, with class-id masks from ``cfg.masks_dir`` as targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from ..train_config import TrainTaskConfig
from ..data.shared import class_boxes, labelled_pairs
from ..paths import require_data_root
from ..tasks.inputs import make_fuser
from .fused_images import TaskTrainingError, build_yolo_dataset, dataset_classes
from .run import prepare_out, run_meta, set_threads


# --------------------------------------------------------------------------- evaluation on real pairs


def evaluate_split(adapter, cfg: TrainTaskConfig, split: str, dataset: str = "MSRS",  # noqa: ANN001
                   fuser: Callable | None = None) -> dict:
    """COCO mAP of a detector on fused images of a split of ``dataset`` (fusion mode from ``cfg``)."""
    root = require_data_root(cfg.data_root or None)
    fuse = fuser or make_fuser(cfg.fusion, cfg.fusion_weights, cfg.device)
    reader, items = labelled_pairs(root, dataset, split, cfg.label_set, adapter.classes)
    images, gts = [], []
    for it in items:
        s = reader.load(it)
        images.append(fuse(s.thermal, s.visible))
        gts.append(class_boxes(reader.record(it)))
    res = adapter.evaluate(images, gts)
    res["split"] = f"{dataset} {split if split != 'eval' else 'eval-20'}"
    return res


# --------------------------------------------------------------------------- training


def _best_state(weights: Path) -> tuple[dict, dict]:
    """State dict (float32) and model yaml of an ultralytics checkpoint this run has just written."""
    import torch

    ck = torch.load(weights, map_location="cpu", weights_only=False)  # our own fresh file
    model = ck.get("ema") or ck["model"]
    return {k: v.float() for k, v in model.float().state_dict().items()}, dict(model.yaml)


def train(cfg: TrainTaskConfig, progress: bool = True) -> Path:
    """Train the task network described by ``cfg``; returns the path of our checkpoint."""
    if cfg.task == "segmentation":
        from .segmentation import train_segmenter

        return train_segmenter(cfg, progress)
    if cfg.task != "detection":
        raise TaskTrainingError(f"unknown task '{cfg.task}'")
    if cfg.imgsz % 32:
        raise TaskTrainingError(f"imgsz {cfg.imgsz} must be a multiple of 32")
    from ..tasks.detection import DetectorConfig, YoloDetector

    set_threads(cfg.threads)  # ultralytics seeds its own generators from cfg.seed
    root = require_data_root(cfg.data_root or None)
    classes = dataset_classes(root, "MSRS" if "MSRS" in cfg.datasets else cfg.datasets[0])
    t0 = time.time()
    cpu0 = _cpu_seconds()
    data_yaml = build_yolo_dataset(cfg, classes, progress)
    out = prepare_out(cfg)

    from ultralytics import YOLO

    t1 = time.time()
    yolo = YOLO(cfg.arch, task="detect")
    if progress:  # ultralytics' own output is silenced by YOLO_VERBOSE=false (scripts/env.sh)
        yolo.add_callback("on_fit_epoch_end", _report_epoch)
    yolo.train(data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch_size, workers=0,
               plots=False, deterministic=True, seed=cfg.seed, device=cfg.device, project=str(out),
               name="ultralytics", exist_ok=True, optimizer=cfg.optimizer, lr0=cfg.lr0, nbs=cfg.nbs, warmup_epochs=cfg.warmup_epochs, mosaic=cfg.mosaic,
               close_mosaic=cfg.close_mosaic, amp=False, pretrained=False, verbose=progress, patience=cfg.epochs,
               cache=False)
    train_s = time.time() - t1
    best = Path(yolo.trainer.best)
    if not best.is_file():
        raise TaskTrainingError(f"ultralytics wrote no best weights at {best}")
    state, model_yaml = _best_state(best)
    det = YoloDetector(DetectorConfig(arch=cfg.arch, classes=list(classes), imgsz=cfg.imgsz,
                                      score_threshold=cfg.score_threshold, iou_threshold=cfg.iou_threshold,
                                      model_yaml=model_yaml), seed=None)
    from ..models.checkpoint import load_state

    load_state(det.model, state, str(best))
    det.freeze()
    # mAP is measured at a low score threshold (COCO practice); predict() keeps the configured one
    eval_det = YoloDetector.from_config_dict({**det.cfg.to_dict(), "score_threshold": 0.001})
    eval_det.model.load_state_dict(det.model.state_dict())
    eval_det.freeze()
    fuser = make_fuser(cfg.fusion, cfg.fusion_weights, cfg.device)
    metrics = {}
    if "MSRS" in cfg.datasets:
        for split in ("val", "eval"):
            r = evaluate_split(eval_det, cfg, split, "MSRS", fuser)
            metrics[r["split"]] = {k: r[k] for k in ("mAP50", "mAP50-95", "mAP75", "AP50", "images", "gt_boxes")}
    meta = run_meta(cfg, task="detection", ultralytics_version=_ul_version(), train_seconds=round(train_s, 1),
                    prepare_seconds=round(t1 - t0, 1),
                    data=json.loads((data_yaml.parent / "key.json").read_text()).get("counts", {}),
                    cpu_seconds=round(_cpu_seconds() - cpu0, 1), metrics=metrics,
                    metric_note="pycocotools COCOeval, score_threshold 0.001, fusion=" + cfg.fusion)
    path = det.save(out / "yolo_det.pt", meta)
    (out / "metrics.json").write_text(json.dumps(meta, indent=1))
    return path


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _report_epoch(trainer) -> None:  # noqa: ANN001
    m = trainer.metrics or {}
    # ultralytics calls this once more after training, for its final validation of the best weights
    what = f"epoch {trainer.epoch + 1}/{trainer.epochs}" if trainer.epoch + 1 <= trainer.epochs else "best weights"
    tl = getattr(trainer, "tloss", None)  # a tensor or a dict of loss items, by ultralytics version
    try:
        loss = float(sum(tl.values()) if isinstance(tl, dict) else tl.sum())
    except (AttributeError, TypeError, ValueError):
        loss = float("nan")
    print(f"{what}  train loss {loss:.3f}  val mAP50 "
          f"{m.get('metrics/mAP50(B)', float('nan')):.4f}  mAP50-95 {m.get('metrics/mAP50-95(B)', float('nan')):.4f}  "
          f"({time.time() - trainer.train_time_start:.0f} s)", flush=True)


def _ul_version() -> str:
    import ultralytics

    return ultralytics.__version__


# --------------------------------------------------------------------------- model card


def model_card(path: str | Path, shipped_as: str = "models/yolo_det_msrs.pt") -> str:
    """Markdown model-card section of a detection checkpoint, generated from its ``meta`` (never retyped)."""
    from ..models import checkpoint
    from ..tasks.detection import YoloDetector

    ckpt = checkpoint.load(path, YoloDetector.KIND)
    meta, cfg = ckpt.get("meta") or {}, ckpt["config"]
    tc = meta.get("train_config", {})
    det = YoloDetector.from_checkpoint(path)
    n_params = sum(p.numel() for p in det.model.parameters())
    size_mb = Path(path).stat().st_size / 1e6
    lines = [
        f"## Detection: {Path(shipped_as).name}", "",
        f"YOLO nano detector (ultralytics `{cfg['arch']}`, built from the yaml, trained from scratch: no pretrained "
        f"weights) for {', '.join(cfg['classes'])} on fused MSRS images. **A demonstration model trained on little "
        f"data** ({sum(v.get('train', 0) for v in meta.get('data', {}).values())} training pairs, "
        f"{tc.get('epochs')} epochs on CPU): it exists so that task-customized fusion can be trained and measured "
        "against a frozen detector, not as a competitive MSRS detector.", "",
        f"- File: `{shipped_as}` ({size_mb:.1f} MB, checkpoint kind `task-detection`, {n_params / 1e6:.2f} M parameters). "
        "Load with `ivif_fusion.tasks.YoloDetector.from_checkpoint` or `ivif_fusion.tasks.load_task`; the model yaml, "
        "class names and thresholds are inside, nothing is downloaded.",
        f"- Input: RGB (N, 3, H, W) float 0..1, any size; letterboxed to long side {cfg['imgsz']} inside the adapter. "
        f"Defaults: score threshold {cfg['score_threshold']}, NMS IoU {cfg['iou_threshold']}, max {cfg['max_det']} boxes.",
        f"- Training images: `{tc.get('fusion')}` fusion"
        + (" (pixel-wise max of IR and visible Y, recombined with the visible CbCr; the VFN backbone did not exist "
           "yet when this model was trained)" if tc.get("fusion") == "max" else "")
        + (f" (generic fusion by `{tc.get('fusion_weights')}`, Y recombined with the visible CbCr: what the "
           "pipeline feeds the detector)" if tc.get("fusion") == "vfn" else "") + ".",
        f"- Data: {', '.join(tc.get('datasets', []))}; boxes `labels_det/{tc.get('label_set')}`. "
        + "; ".join(f"{ds}: {v.get('train')} train pairs (frames 131-1399), {v.get('val')} val pairs (frames 1400+, "
                    "best epoch selection)" if ds == "MSRS" else f"{ds}: {v.get('train')} train pairs"
                    for ds, v in meta.get("data", {}).items())
        + ". The 20 MSRS eval-20 pairs (frames 4-107) and the guard band (108-130) are never used in training.",
        f"- Recipe: ultralytics trainer, imgsz {tc.get('imgsz')}, {tc.get('epochs')} epochs, batch {tc.get('batch_size')}, "
        f"{tc.get('optimizer')} lr0 {tc.get('lr0')}, mosaic {tc.get('mosaic')} (off for the last {tc.get('close_mosaic')} "
        f"epochs), seed {tc.get('seed')}, deterministic, workers 0, {tc.get('threads')} threads, device {tc.get('device')}; "
        f"ultralytics {meta.get('ultralytics_version')}.",
        f"- Time: {meta.get('train_seconds', 0) / 60:.1f} min wall for training (+{meta.get('prepare_seconds', 0):.0f} s "
        "fusing and caching the images) on 2 CPU cores"
        + (f"; {meta['cpu_seconds'] / 60:.1f} CPU-minutes for the whole command" if meta.get("cpu_seconds") else "")
        + ".",
        f"- Command: `{meta.get('command')}` (config `config/train_task_detection.yaml`), then "
        f"`cp {tc.get('out', 'runs/task_detection')}/yolo_det.pt {shipped_as}`.", "",
        "| split | images | boxes | mAP50 (%) | mAP50-95 (%) | mAP75 (%) | "
        + " | ".join(f"AP50 {c} (%)" for c in cfg["classes"]) + " |",
        "|" + "---|" * (6 + len(cfg["classes"])),
    ]
    for split, m in meta.get("metrics", {}).items():
        ap = m.get("AP50", {})
        lines.append(f"| {split} | {m['images']} | {m['gt_boxes']} | {100 * m['mAP50']:.1f} | {100 * m['mAP50-95']:.1f} | "
                     f"{100 * m['mAP75']:.1f} | " + " | ".join(f"{100 * ap.get(c, float('nan')):.1f}" for c in cfg["classes"])
                     + " |")
    lines += ["", f"Metrics: {meta.get('metric_note', '')}; 101-point AP, IoU 0.50 and 0.50:0.95, all areas, on "
              "the same kind of fused images the model was trained on, ground truth "
              f"`labels_det/{tc.get('label_set')}`. `ivif eval tasks` compares IR-only, visible-only and fused inputs "
              "(docs/results_tasks.md).", ""]
    return "\n".join(lines)
