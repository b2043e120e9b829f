"""Why cross-fitting: the shipped detector's loss on training vs val crops, generic vs 15 % IR blend.

The RSC learns from the frozen detector's loss on MSRS training crops. The detector was trained
on those pairs, so its loss there is near its memorised minimum for generic fusion. This script
measures how much a simple change (blending 15 % of the IR into the generic fused Y) moves the
loss on training pairs and on val pairs (frames 1400+): 30 batches of 4 crops of 256 each,
drawn as in RSC training (``training.rsc.sample_batch``, seed 7).

Usage: ``python experiments/detector_loss_gap.py`` -> ``experiments/detector_loss_gap.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ivif_fusion.train_config import TrainRSCConfig
from ivif_fusion.models import checkpoint
from ivif_fusion.paths import resolve
from ivif_fusion.tasks import load_task
from ivif_fusion.training import rsc as R

HERE = Path(__file__).resolve().parent


def main() -> int:
    torch.set_num_threads(2)
    cfg = TrainRSCConfig()
    train_pairs = R.load_labelled_pairs(cfg, progress=False)
    val_pairs = R.load_labelled_pairs(cfg, progress=False, split="val")
    vfn = checkpoint.load_vfn(resolve(cfg.backbone))
    det = load_task(resolve("models/yolo_det_msrs.pt"))
    det.freeze()
    det.cfg.imgsz = R._task_imgsz(det, cfg.crop, 640)
    res = {}
    for name, pairs in (("train", train_pairs), ("val", val_pairs)):
        losses = {"generic": [], "blend_ir_15": []}
        for step in range(30):
            b = R.sample_batch(pairs, cfg.crop, 4, 7, step)
            with torch.no_grad():
                g = vfn(b["ir"], b["y"])
                for k, fy in (("generic", g), ("blend_ir_15", 0.85 * g + 0.15 * b["ir"])):
                    losses[k].append(det.loss(R.to_rgb(fy, b["cbcr"]), b["targets"]).item())
        m = {k: float(np.mean(v)) for k, v in losses.items()}
        res[name] = {"pairs": len(pairs), **{k: round(v, 4) for k, v in m.items()},
                     "blend_change_percent": round(100 * (m["blend_ir_15"] - m["generic"]) / m["generic"], 2)}
    out = HERE / "detector_loss_gap"
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["Shipped detector loss on 30 batches of 4 crops (256 px), generic fused vs 15 % IR blend", "",
             "| pairs | n | generic | blend | change |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {r['pairs']} | {r['generic']:.4f} | {r['blend_ir_15']:.4f} | {r['blend_change_percent']:+.2f} % |"
              for k, r in res.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
