"""`ivif eval tasks`: task networks on IR-only, visible-only, generic fused and customized fused inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..paths import DEFAULT_BACKBONE

COMMAND = ("eval", "tasks")
HELP = "task metric (mAP / mIoU) and fusion metrics of each task network on single-modality and fused inputs"
MASKS_NOTE = ("box-supervised pseudo-masks (docs/pseudo_masks.md): mIoU against them measures agreement with that "
              "method, not MSRS segmentation mIoU")
SHIPPED_RSC = "models/rsc_det_msrs.pt"  # the default task-customized column


def _name_path(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got '{s}'")
    k, v = s.split("=", 1)
    return k.strip(), v.strip()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", action="append", type=_name_path, default=[], metavar="NAME=CKPT",
                   help="task network checkpoint (repeatable; default: detection=models/yolo_det_msrs.pt)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help="generic fusion backbone; when missing, pixel-max fusion is used and labelled as such")
    p.add_argument("--input", action="append", type=_name_path, default=[], metavar="NAME=CKPT",
                   help=f"extra input column from a checkpoint, e.g. rsc={SHIPPED_RSC} (repeatable; default: "
                        f"'task-customized (RSC)' from {SHIPPED_RSC} when it and the backbone exist)")
    p.add_argument("--split", default="eval", choices=("eval", "val"),
                   help="MSRS split: the 20 held-out pairs (eval-20) or the validation range")
    p.add_argument("--label-set", default="fusion", choices=("fusion", "infrared", "visible"),
                   help="MSRS box set used as ground truth for every input")
    p.add_argument("--masks-dir", default="",
                   help="class-id masks of the segmentation tasks (<name>.png); default: the masks_dir each "
                        "segmenter was trained with (its checkpoint's train_config)")
    p.add_argument("--data-root", default="", help="data root (empty: $IVIF_DATA or ../shared/data/ivif)")
    p.add_argument("--no-fusion-metrics", action="store_true", help="skip the fusion metrics (faster)")
    p.add_argument("--out", default="docs/results_tasks.md", help="markdown results table")
    p.add_argument("--json", default="docs/results_tasks.json", help="raw results (JSON)")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..errors import UserError
    from ..paths import require_data_root, resolve
    from ..tasks import load_task
    from ..tasks.evaluation import EvalTasksError, evaluate_tasks, mask_targets, msrs_eval_set, write_results
    from ..tasks.inputs import input_from_checkpoint, standard_inputs

    specs = args.task or [("detection", "models/yolo_det_msrs.pt")]
    tasks = {}
    notes_tasks: list[str] = []
    for name, path in specs:
        p = resolve(path)
        if not p.is_file():
            raise CheckpointError(f"task '{name}': checkpoint {p} not found (train one with `ivif train task`)")
        adapter = load_task(p)
        if hasattr(adapter.cfg, "score_threshold"):
            adapter.cfg.score_threshold = 0.001  # mAP over the whole score range (COCO practice)
        tasks[name] = adapter
        tc = adapter.meta().get("train_config") or {}
        trained_on = tc.get("fusion")
        if trained_on:
            by = f" (`{tc.get('fusion_weights')}`)" if trained_on == "vfn" and tc.get("fusion_weights") else ""
            notes_tasks.append(f"Task `{name}` ({p.name}) was trained on `{trained_on}`{by} images.")
    root = require_data_root(args.data_root or None)
    backbone = resolve(args.backbone)
    notes = list(notes_tasks)
    if not backbone.is_file():
        notes.append(f"No generic backbone at {args.backbone}: no generic-fused column.")
        backbone = None
    inputs = standard_inputs(backbone)
    extra = list(args.input)
    if not extra and backbone is not None and resolve(SHIPPED_RSC).is_file():
        extra = [("task-customized (RSC)", SHIPPED_RSC)]
    for name, path in extra:
        try:
            inputs[name] = input_from_checkpoint(resolve(path), backbone)
        except UserError as e:
            if args.input:
                raise
            notes.append(f"Default column '{name}' left out: {e}")
    # detection tasks get the MSRS boxes, segmentation tasks the masks of their masks_dir
    det = [(n, a) for n, a in tasks.items() if a.TASK == "detection"]
    seg = [(n, a) for n, a in tasks.items() if a.TASK == "segmentation"]
    if not det and not seg:
        raise EvalTasksError("no detection or segmentation task given: nothing has ground truth here")
    data = msrs_eval_set(root, det[0][1].classes if det else None, args.split, args.label_set,
                         task=det[0][0] if det else None)
    for name, a in det[1:]:
        data.targets[name] = msrs_eval_set(root, a.classes, args.split, args.label_set, name).targets[name]
    for name, a in seg:
        masks_dir = args.masks_dir or (a.meta().get("train_config") or {}).get("masks_dir", "")
        if not masks_dir:
            raise EvalTasksError(f"task '{name}': no mask folder; pass --masks-dir DIR (e.g. from `ivif data masks`)")
        data.targets[name] = mask_targets(resolve(masks_dir), data)
        notes.append(f"Task `{name}`: ground truth {masks_dir}, {MASKS_NOTE}. mIoU car/person/bike is the mean IoU "
                     "of the three object classes; mIoU incl. background adds class 0 (`unlabelled`, the background "
                     "of the masks); pixels marked 255 (ignore) are not counted; a class in neither the masks nor the "
                     "predictions (n/a) is left out of both means.")
    for name, _ in det:
        boxes = np.concatenate([np.asarray(t).reshape(-1, 5) for t in data.targets[name]])
        per = ", ".join(f"{c} {int((boxes[:, 0] == k).sum())}" for k, c in enumerate(tasks[name].classes))
        notes.append(f"Task `{name}`: {len(boxes)} boxes in {len(data.names)} pairs ({per}); with so few boxes, "
                     "differences of a few mAP points are within noise, and a class with a handful of boxes "
                     "(AP50 per class) is not measured reliably.")
    import shlex
    import sys

    notes.append("Command: `ivif " + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "` (raw numbers: "
                 f"{args.json}). Add a task-customized column with `--input NAME=CKPT` (kinds: "
                 "vfn, rsc, vifa, or any registered with ivif_fusion.tasks.inputs.register_input_loader).")
    notes.append("Pixel-max fused: max of IR and visible Y with the visible colour. Generic fused: the backbone "
                 f"({args.backbone}) Y with the visible colour.")
    results = write_results(
        evaluate_tasks(tasks, inputs, data, with_fusion_metrics=not args.no_fusion_metrics), args.out, args.json,
        notes=notes + ([f"Ground truth: MSRS `labels_det/{args.label_set}` boxes for every input; mAP by pycocotools "
                        "(COCOeval, score threshold 0.001, IoU 0.50 and 0.50:0.95)."] if det else []) + [
                       "Fusion metrics: mean over the pairs, computed on the input image against the IR and "
                       "visible sources (ivif_fusion.metrics.fusion)."])
    md, js = results
    print(f"results: {md}" + (f"\nraw: {js}" if js else ""))
    return 0 if Path(md).is_file() else 1
