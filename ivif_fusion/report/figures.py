"""PNG figures of the replay report (matplotlib, Agg backend; no display needed); masks in the one mask palette."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.mask_palette import ALIASES, CLASS_COLOURS, IGNORE_ID, mask_colours, overlay_mask

# Distinct, colour-blind-friendly box colours per class id (RGB 0..255).
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (255, 255, 255)]


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accounting_figure(accounting: dict[str, dict], path: Path) -> bool:
    """Stacked horizontal bars per stream: fused frames, then drops by reason."""
    if not accounting:
        return False
    plt = _plt()
    streams = list(accounting)
    reasons = sorted({r for a in accounting.values() for r in a["dropped"]})
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(streams)))
    left = np.zeros(len(streams))
    vals = [a["fused"] for a in accounting.values()]
    ax.barh(streams, vals, left=left, color="#4c9a2a", label="fused")
    left += vals
    cmap = plt.get_cmap("tab10")
    colours = [cmap(i) for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)]  # tab10 without its green (green = fused)
    for i, r in enumerate(reasons):
        vals = [a["dropped"].get(r, 0) for a in accounting.values()]
        ax.barh(streams, vals, left=left, color=colours[i % len(colours)], label=r)
        left += vals
    ax.set_xlabel("frames received")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.1 * len(streams)), ncol=4, fontsize=8, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def latency_figure(timings: dict[str, list[float]], path: Path) -> bool:
    """One histogram per stage (ms), median and p90 marked."""
    stages = [s for s, v in timings.items() if len(v) > 0]
    if not stages:
        return False
    plt = _plt()
    cols = min(3, len(stages))
    rows = (len(stages) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, st in zip(axes.flat, stages):
        v = np.asarray(timings[st], dtype=np.float64)
        ax.hist(v, bins=min(30, max(5, v.size // 2)), color="#3b75af")
        med, p90 = np.median(v), np.percentile(v, 90)
        ax.axvline(med, color="k", lw=1, label=f"median {med:.2f}")
        ax.axvline(p90, color="r", lw=1, ls="--", label=f"p90 {p90:.2f}")
        ax.set_title(st, fontsize=10)
        ax.set_xlabel("ms", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(stages):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def draw_detections(img: np.ndarray, dets: Sequence[Any] | None, gt: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Copy of an RGB uint8 image with boxes: ground truth dashed white, detections coloured with label and score."""
    import cv2

    out = np.ascontiguousarray(img.copy())
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, round(2 * scale))
    for g in gt or []:
        x1, y1, x2, y2 = (int(round(v)) for v in g[1:5])
        # dashed rectangle: short segments along each side
        step = max(4, round(8 * scale))
        for x in range(x1, x2, 2 * step):
            cv2.line(out, (x, y1), (min(x + step, x2), y1), (255, 255, 255), 1)
            cv2.line(out, (x, y2), (min(x + step, x2), y2), (255, 255, 255), 1)
        for y in range(y1, y2, 2 * step):
            cv2.line(out, (x1, y), (x1, min(y + step, y2)), (255, 255, 255), 1)
            cv2.line(out, (x2, y), (x2, min(y + step, y2)), (255, 255, 255), 1)
    for d in dets or []:
        colour = PALETTE[int(d.class_id) % len(PALETTE)]
        p1, p2 = (int(round(d.x1)), int(round(d.y1))), (int(round(d.x2)), int(round(d.y2)))
        cv2.rectangle(out, p1, p2, colour, thick)
        text = f"{d.label or d.class_id} {d.score:.2f}"
        fs = 0.4 * max(scale, 0.5)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        ty = max(p1[1], th + 2)
        cv2.rectangle(out, (p1[0], ty - th - 2), (p1[0] + tw + 2, ty), colour, -1)
        cv2.putText(out, text, (p1[0] + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def samples_figure(samples: Sequence[Any], tasks: Sequence[str], path: Path) -> bool:
    """Grid: one row per sample pair; columns thermal, RGB, fused per task (with boxes)."""
    if not samples:
        return False
    plt = _plt()
    cols = 2 + len(tasks)
    h, w = samples[0].thermal.shape[:2]
    cell = 3.6
    fig, axes = plt.subplots(len(samples), cols, figsize=(cell * cols, cell * h / w * len(samples) + 0.4),
                             squeeze=False)
    for r, s in enumerate(samples):
        t = f"{s.stamp_ns // 1_000_000_000}.{(s.stamp_ns % 1_000_000_000) // 1_000_000:03d}"
        panels = [("thermal", s.thermal, "gray"), ("RGB", s.visible, None)]
        for task in tasks:
            img = s.fused.get(task)
            if img is None:
                continue
            panels.append((f"fused: {task}", draw_detections(img, s.detections.get(task), s.gt), None))
        for c, (title, img, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest" if max(img.shape[:2]) < 200 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"t={t}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def segmentation_figure(samples: Sequence[Any], task_classes: dict[str, list[str]], path: Path) -> bool:
    """Grid: one row per sample pair, one column per segmentation task (mask over its fused image), legend."""
    tasks = [t for t in task_classes if any(t in s.masks for s in samples)]
    if not tasks:
        return False
    from matplotlib.patches import Patch

    plt = _plt()
    h, w = samples[0].thermal.shape[:2]
    cell = 3.6
    fig, axes = plt.subplots(len(samples), len(tasks), figsize=(cell * len(tasks), cell * h / w * len(samples) + 0.9),
                             squeeze=False)
    legend: dict[str, tuple[int, int, int]] = {}
    for r, s in enumerate(samples):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"mask: {task}", fontsize=10)
            mask, fused = s.masks.get(task), s.fused.get(task)
            if mask is None or fused is None:
                continue
            names = {**dict(enumerate(task_classes[task])), IGNORE_ID: "ignore"}
            colours = mask_colours(task_classes[task])
            ax.imshow(overlay_mask(fused, mask, colours), interpolation="nearest" if max(h, w) < 200 else None)
            present = set(np.unique(mask).tolist())
            for k, col in colours.items():
                if k in present or ALIASES.get(names[k], names[k]) in CLASS_COLOURS:
                    legend.setdefault(names[k], col)
    handles = [Patch(color=np.asarray(c) / 255.0, label=n) for n, c in legend.items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
