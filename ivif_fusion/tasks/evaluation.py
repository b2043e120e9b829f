"""Task networks on different inputs of the same pairs: IR only, visible only, fused variants.

An *input* is a function ``f(ir (H, W), vi (H, W, 3), task_name) -> (H, W, 3)`` float32 RGB 0..1;
the task name lets task-customized fusion (RSC, VIFA) give each task its own image. Columns are
added by passing more inputs: :func:`standard_inputs` gives IR-only, visible-only and generic
fused; :func:`input_from_checkpoint` turns a checkpoint into an input, choosing a loader from the
checkpoint's kind in :data:`INPUT_LOADERS` (``vfn`` is built in; RSC / VIFA modules register theirs
with :func:`register_input_loader`).

For every (task, input) the task metric (detection: pycocotools mAP50, mAP50-95; segmentation:
mIoU) is computed together with the mean fusion metrics of that input against the sources.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

InputFn = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
#: kind of a checkpoint -> loader(path, backbone_path) -> InputFn
INPUT_LOADERS: dict[str, Callable[[Path, Path | None], InputFn]] = {}


class EvalTasksError(UserError):
    """The evaluation request cannot be served (missing weights, no labels, bad input spec)."""


def register_input_loader(kind: str, loader: Callable[[Path, Path | None], InputFn]) -> None:
    """Let ``ivif eval tasks --input NAME=CKPT`` build an input from checkpoints of ``kind``."""
    INPUT_LOADERS[kind] = loader


def _vfn_loader(path: Path, backbone: Path | None) -> InputFn:  # noqa: ARG001 - the checkpoint is the backbone
    from ..training.task import make_fuser

    fuse = make_fuser("vfn", path)
    return lambda ir, vi, task: fuse(ir, vi)


def _rsc_loader(path: Path, backbone: Path | None) -> InputFn:
    """Task-customized fusion: backbone + RSC; the task's fused Y recombined with the visible colour."""
    from ..colour import luminance, recombine
    from ..models.checkpoint import load_vfn
    from ..models.rsc import load_customized

    if backbone is None or not Path(backbone).is_file():
        raise EvalTasksError(f"RSC input {path} needs the backbone it customizes (--backbone), got {backbone}")
    net = load_customized(path, load_vfn(backbone))

    def fuse(ir: np.ndarray, vi: np.ndarray, task: str) -> np.ndarray:
        if task not in net.tasks:
            raise EvalTasksError(f"RSC {path} has no branch for task '{task}' (it has {list(net.tasks)})")
        return recombine(net.fuse_numpy(ir, luminance(vi), task), vi)

    return fuse


register_input_loader("vfn", _vfn_loader)
register_input_loader("rsc", _rsc_loader)


def input_from_checkpoint(path: str | os.PathLike, backbone: str | os.PathLike | None = None) -> InputFn:
    """An input function from a checkpoint, by its kind (see :data:`INPUT_LOADERS`)."""
    from ..models import checkpoint

    p = Path(path)
    kind = checkpoint.load(p).get("kind")
    if kind not in INPUT_LOADERS:
        # modules that know how to fuse with their checkpoints register on import
        for mod in ("ivif_fusion.models.rsc", "ivif_fusion.models.heads", "ivif_fusion.models.vifa"):
            try:
                __import__(mod)
            except ImportError:
                pass
    if kind not in INPUT_LOADERS:
        raise EvalTasksError(f"{p} holds a '{kind}' checkpoint and no input loader is registered for it "
                             f"(known: {sorted(INPUT_LOADERS)}); pass a callable to evaluate_tasks instead")
    return INPUT_LOADERS[kind](p, Path(backbone) if backbone else None)


def standard_inputs(backbone: str | os.PathLike | None) -> dict[str, InputFn]:
    """IR only, visible only, pixel-max fused and (when ``backbone`` is given) the generic VFN-fused image."""
    from ..training.task import make_fuser

    ir_fn, vi_fn = make_fuser("ir"), make_fuser("visible")
    inputs: dict[str, InputFn] = {"IR only": lambda ir, vi, t: ir_fn(ir, vi),
                                  "visible only": lambda ir, vi, t: vi_fn(ir, vi)}
    mx = make_fuser("max")
    inputs["pixel-max fused"] = lambda ir, vi, t: mx(ir, vi)  # rule baseline (and the detector's training domain)
    if backbone is not None:
        fuse = make_fuser("vfn", backbone)
        inputs["generic fused (VFN)"] = lambda ir, vi, t: fuse(ir, vi)
    return inputs


@dataclass
class EvalSet:
    """Pairs with per-task ground truth: ``targets[task][i]`` belongs to ``names[i]``."""

    name: str
    names: list[str]
    ir: list[np.ndarray]
    vi: list[np.ndarray]
    targets: dict[str, list[Any]] = field(default_factory=dict)


def msrs_eval_set(root: Path, classes: Sequence[str], split: str = "eval", label_set: str = "fusion",
                  task: str = "detection") -> EvalSet:
    """MSRS pairs of ``split`` with boxes of ``label_set`` mapped to ``classes`` (by name)."""
    from ..training.task import _dataset_classes, boxes_xyxy, class_map, labelled_pairs

    folder, names = labelled_pairs(root, "MSRS", split, label_set)
    if not names:
        raise EvalTasksError(f"no labelled MSRS pairs in split '{split}' under {root}")
    cmap = class_map(_dataset_classes(root, "MSRS"), list(classes), "MSRS")
    irs, vis, gts = [], [], []
    for n in names:
        s = folder.load(n)
        irs.append(s.ir)
        vis.append(s.vi)
        gts.append(boxes_xyxy(root, "MSRS", n, s.ir.shape[1], s.ir.shape[0], label_set, cmap))
    label = "MSRS eval-20" if split == "eval" and len(names) == 20 else f"MSRS {split}"
    return EvalSet(label, names, irs, vis, {task: gts})


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
        keys = ["mAP50", "mAP50-95"] if adapter.TASK == "detection" else ["mIoU"]
        for iname, fn in inputs.items():
            t0 = time.time()
            imgs, fm = [], []
            for ir, vi in tqdm(list(zip(data.ir, data.vi, strict=True)), desc=f"{tname} / {iname}",
                               disable=not progress, unit="pair"):
                img = np.clip(np.asarray(fn(ir, vi, tname), dtype=np.float32), 0, 1)
                if img.shape[:2] != ir.shape:
                    raise EvalTasksError(f"input '{iname}' returned {img.shape[:2]} for a {ir.shape} pair")
                imgs.append(img)
                if with_fusion_metrics:
                    fm.append(fusion_metrics(ir, vi, img))
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
        head = ["input"] + [f"{k} (%)" for k in keys]  # task metrics in percent
        if t["classes"] and "AP50" in next(iter(t["rows"].values())):
            head += [f"AP50 {c} (%)" for c in t["classes"]]
        head += fcols
        lines += [f"### Task: {tname}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for iname, r in t["rows"].items():
            cells = [iname] + [_fmt(r[k], 100, 1) for k in keys]
            if "AP50" in r and t["classes"]:
                cells += [_fmt(r["AP50"].get(c), 100, 1) for c in t["classes"]]
            cells += [_fmt(r.get("fusion", {}).get(c), 1, 3) for c in fcols]
            lines.append("| " + " | ".join(cells) + " |")
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
