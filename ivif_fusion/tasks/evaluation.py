"""Task networks on different inputs of the same pairs: IR only, visible only, fused variants.

Inputs are functions ``f(ir, vi, task) -> RGB`` (:mod:`ivif_fusion.tasks.inputs`); columns are
added by passing more of them. For every (task, input) the task metric (detection: pycocotools
mAP50, mAP50-95; segmentation: mean IoU of the object classes and of all classes, IoU per class)
is computed together with the mean fusion metrics of that input against the sources. Pairs and
boxes come from the data layer (:func:`ivif_fusion.data.shared.labelled_pairs`); segmentation
masks from a mask folder (:func:`mask_targets`, e.g. the pseudo-masks of ``ivif data masks``).
An input that cannot serve a task (an RSC without a branch for it) gives an ``n/a`` row, with the reason.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.pseudo_mask_folder import read_mask
from ..data.shared import class_boxes, labelled_pairs
from ..errors import UserError
from .inputs import InputError, InputFn

#: task metrics reported per task kind (the first one is the headline) and their column titles
METRIC_KEYS = {"detection": ["mAP50", "mAP50-95"], "segmentation": ["mIoU_objects", "mIoU"]}
METRIC_TITLES = {"mIoU_objects": "mIoU car/person/bike", "mIoU": "mIoU incl. background"}


class EvalTasksError(UserError):
    """The evaluation request cannot be served (no labels, no task with ground truth, bad input image)."""


@dataclass
class EvalSet:
    """Pairs with per-task ground truth: ``targets[task][i]`` belongs to ``names[i]``."""

    name: str
    names: list[str]
    thermal: list[np.ndarray]
    visible: list[np.ndarray]
    targets: dict[str, list[Any]] = field(default_factory=dict)


def msrs_eval_set(root: Path, classes: Sequence[str] | None, split: str = "eval", label_set: str = "fusion",
                  task: str | None = "detection") -> EvalSet:
    """MSRS pairs of ``split`` with boxes of ``label_set`` mapped to ``classes`` (by name) as the targets
    of ``task`` (None: the labelled pairs without targets, e.g. for :func:`mask_targets`)."""
    reader, items = labelled_pairs(root, "MSRS", split, label_set, classes)
    if not items:
        raise EvalTasksError(f"no labelled MSRS pairs in split '{split}' under {root}")
    irs, vis, gts = [], [], []
    for it in items:
        s = reader.load(it)
        irs.append(s.thermal)
        vis.append(s.visible)
        gts.append(class_boxes(reader.record(it)))
    names = [it.file for it in items]
    label = "MSRS eval-20" if split == "eval" and len(names) == 20 else f"MSRS {split}"
    return EvalSet(label, names, irs, vis, {task: gts} if task else {})


def mask_targets(masks_dir: str | os.PathLike, data: EvalSet) -> list[np.ndarray]:
    """The (H, W) uint8 class-id mask ``<masks_dir>/<name>.png`` of every pair of ``data`` (a clear
    error naming the first one missing or of the wrong size)."""
    folder = Path(masks_dir)
    if not folder.is_dir():
        raise EvalTasksError(f"mask folder {folder} not found (write masks with `ivif data masks --out {folder}`)")
    return [read_mask(folder, name, thermal.shape) for name, thermal in zip(data.names, data.thermal, strict=True)]


def evaluate_tasks(tasks: dict[str, Any], inputs: dict[str, InputFn], data: EvalSet, *,
                   with_fusion_metrics: bool = True, progress: bool = True) -> dict:
    """Task metric and mean fusion metrics for every (task, input).

    Args:
        tasks: task name -> :class:`~ivif_fusion.tasks.base.TaskAdapter`; tasks without ground truth
            in ``data.targets`` are reported as skipped.
        inputs: column name -> input function (ir, vi, task) -> RGB.
        data: the pairs and their ground truth.

    Returns:
        ``{"set": str, "pairs": int, "tasks": {task: {"metric_keys": [...], "rows": {input: {...}}}},
        "skipped": {task: reason}}``; each row holds the task metrics, ``fusion`` (mean of each
        fusion metric over the pairs) and ``seconds``.
    """
    from tqdm import tqdm

    from ..metrics.fusion import fusion_metrics

    out: dict[str, Any] = {"set": data.name, "pairs": len(data.names), "tasks": {}, "skipped": {}}
    for tname, adapter in tasks.items():
        if tname not in data.targets:
            out["skipped"][tname] = f"no {tname} ground truth in {data.name}"
            continue
        rows = {}
        keys = METRIC_KEYS.get(adapter.TASK, ["mIoU"])
        for iname, fn in inputs.items():
            t0 = time.time()
            imgs, fm = [], []
            for thermal, visible in tqdm(list(zip(data.thermal, data.visible, strict=True)), desc=f"{tname} / {iname}",
                               disable=not progress, unit="pair"):
                try:
                    img = fn(thermal, visible, tname)
                except InputError as e:  # this input has nothing for this task: an n/a row that says why
                    rows[iname] = {**dict.fromkeys(keys), "note": str(e)}
                    break
                img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
                if img.shape[:2] != thermal.shape:
                    raise EvalTasksError(f"input '{iname}' returned {img.shape[:2]} for a {thermal.shape} pair")
                imgs.append(img)
                if with_fusion_metrics:
                    fm.append(fusion_metrics(thermal, visible, img))
            if iname in rows:
                continue
            res = adapter.evaluate(imgs, data.targets[tname])
            row = {k: res[k] for k in keys}
            row.update({k: v for k, v in res.items() if k in ("AP50", "IoU")})
            if fm:
                row["fusion"] = {k: float(np.nanmean([m[k] for m in fm])) for k in fm[0]}
            row["seconds"] = round(time.time() - t0, 1)
            rows[iname] = row
        out["tasks"][tname] = {"metric_keys": keys, "rows": rows, "classes": list(adapter.classes)}
    return out


FUSION_COLUMNS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "Nabf")


def _fmt(v: Any, scale: float = 1.0, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v * scale:.{digits}f}"


def results_markdown(results: dict, notes: Sequence[str] = ()) -> str:
    """Markdown tables (one per task): task metric beside the fusion metrics, one row per input."""
    lines = [f"## {results['set']} ({results['pairs']} pairs)", ""]
    for tname, t in results["tasks"].items():
        keys = t["metric_keys"]
        fcols = [c for c in FUSION_COLUMNS if any(c in r.get("fusion", {}) for r in t["rows"].values())]
        head = ["input"] + [f"{METRIC_TITLES.get(k, k)} (%)" for k in keys]  # task metrics in percent
        per_class = next((m for m in ("AP50", "IoU") if any(m in r for r in t["rows"].values())), None)
        if t["classes"] and per_class:
            head += [f"{per_class} {c} (%)" for c in t["classes"]]
        head += fcols
        lines += [f"### Task: {tname}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for iname, r in t["rows"].items():
            cells = [iname] + [_fmt(r[k], 100, 1) for k in keys]
            if per_class and t["classes"]:
                cells += [_fmt(r.get(per_class, {}).get(c), 100, 1) for c in t["classes"]]
            cells += [_fmt(r.get("fusion", {}).get(c), 1, 3) for c in fcols]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [f"- `{tname}` / {iname}: n/a, {r['note']}" for iname, r in t["rows"].items() if r.get("note")]
        lines.append("")
    for tname, why in results.get("skipped", {}).items():
        lines.append(f"- Task `{tname}` skipped: {why}.")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: dict, md_path: str | os.PathLike, json_path: str | os.PathLike | None = None,
                  title: str = "Task networks on fused and single-modality inputs",
                  notes: Sequence[str] = ()) -> tuple[Path, Path | None]:
    """Write the markdown report (with a title and notes) and the raw JSON."""
    md = Path(md_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(f"# {title}\n\n" + results_markdown(results, notes))
    jp = None
    if json_path is not None:
        jp = Path(json_path)
        jp.parent.mkdir(parents=True, exist_ok=True)
        jp.write_text(json.dumps(results, indent=1, default=float))
    return md, jp
