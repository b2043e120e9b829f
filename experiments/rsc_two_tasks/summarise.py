"""Summarise two RSC runs against the detector and the segmenter together: CAGrad (c > 0) vs plain summing (c = 0).

Reads each run's ``log.csv`` (``ivif train rsc``, columns per task: task, ref, fidelity, gradient_norm,
cagrad_weight, update_coef, update_cos; per step: min_task_cos) and writes a markdown summary:

- per task and arm, the gain over generic fusion on the same crops, ``(ref - task) / ref`` (``ref`` is
  the generic image's loss on the batch, so batch-to-batch noise cancels), in windows of steps;
- conflicts: how often the two task gradients point against each other (``min_task_cos < 0``);
- what the combination did: the mean weight of each task gradient in the update and how often the
  update had a negative cosine with a task's gradient (to first order: a step that raises that task's loss).

Usage: python experiments/rsc_two_tasks/summarise.py LABEL=RUN_DIR ... [--window 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_log(path: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(open(path)))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def tasks_of(log: dict[str, np.ndarray]) -> list[str]:
    return [k[:-len("_update_cos")] for k in log if k.endswith("_update_cos")]


def summarise(runs: dict[str, Path], window: int) -> str:
    logs = {label: read_log(d / "log.csv") for label, d in runs.items()}
    tasks = tasks_of(next(iter(logs.values())))
    lines = ["Gain over generic fusion on the same crops, (ref - task) / ref in %, mean per window of steps:", ""]
    n = min(len(log["step"]) for log in logs.values())
    edges = list(range(0, n, window)) + [n]
    spans = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    lines += ["| arm | task | " + " | ".join(f"steps {a + 1}-{b}" for a, b in spans) + " | task loss first/last window |",
              "|---|---|" + "---:|" * len(spans) + "---|"]
    for label, log in logs.items():
        for t in tasks:
            gain = 100 * (log[f"{t}_ref"] - log[f"{t}_task"]) / log[f"{t}_ref"]
            loss = log[f"{t}_task"]
            lines.append(f"| {label} | {t} | " + " | ".join(f"{gain[a:b].mean():+.2f}" for a, b in spans)
                         + f" | {loss[spans[0][0]:spans[0][1]].mean():.4f} / {loss[spans[-1][0]:spans[-1][1]].mean():.4f} |")
    lines += ["", "Conflicts and what the combination did (all steps):", "",
              "| arm | steps | cos(g_det, g_seg) < 0 | median cos | 10 % / 90 % cos | "
              + " | ".join(f"mean coef {t}" for t in tasks) + " | "
              + " | ".join(f"update against {t}" for t in tasks) + " | "
              + " | ".join(f"median norm {t}" for t in tasks) + " |",
              "|---|---:|---:|---:|---:|" + "---:|" * (3 * len(tasks))]
    for label, log in logs.items():
        cos = log["min_task_cos"]
        lines.append(f"| {label} | {len(cos)} | {100 * (cos < 0).mean():.0f} % | {np.median(cos):+.3f} | "
                     f"{np.quantile(cos, 0.1):+.3f} / {np.quantile(cos, 0.9):+.3f} | "
                     + " | ".join(f"{log[f'{t}_update_coef'].mean():.3f}" for t in tasks) + " | "
                     + " | ".join(f"{100 * (log[f'{t}_update_cos'] < 0).mean():.0f} %" for t in tasks) + " | "
                     + " | ".join(f"{np.median(log[f'{t}_gradient_norm']):.3g}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (a folder with log.csv)")
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    runs = dict(r.rsplit("=", 1) for r in a.runs)  # labels may hold "=" (c=0.5), paths do not
    text = summarise({k: Path(v) for k, v in runs.items()}, a.window)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
