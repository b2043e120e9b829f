"""Generic vs RSC-customized fusion on MSRS eval-20: detection mAP (pycocotools) and fusion metrics.

For each of the 20 held-out MSRS pairs (frames <= 107, never trained on): the frozen backbone's
generic fused Y, and the RSC-customized Y for the detection task (a) with the task descriptor
pooled from the detector's features on the generic fused image (the closed loop) and (b) with
the RSC's stored mean descriptor (no descriptor, what ``Pipeline`` runs). Colour images are the
fused Y with the visible CbCr, quantised to uint8 as published. The same detector
(``--detector``) runs on each; boxes are scored against ``labels_det/fusion`` with COCO mAP
(score threshold ``--score`` so that the PR curve is complete). Fusion metrics (Qabf, VIF, ...)
are computed on the same uint8 images against IR and visible.

``--dataset LLVIP`` runs the same comparison on the 50 shared LLVIP night pairs (person boxes
only, a dataset neither the detector nor RSC was trained on), downscaled to a long side of
``--max-side`` (640, the backbone's training scale); mAP is then person AP.

Usage: ``python experiments/rsc_eval.py --rsc models/rsc_det_msrs.pt`` -> ``experiments/rsc_eval.json``/``.md``;
``python experiments/rsc_eval.py --dataset LLVIP --out experiments/rsc_eval_llvip``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ivif_fusion.colour import recombine, rgb_to_ycbcr
from ivif_fusion.data.labels import read_yolo, yolo_to_xyxy
from ivif_fusion.data.paired import PairedFolder
from ivif_fusion.data.splits import msrs_split
from ivif_fusion.imageops import fit_max_side, to_uint8
from ivif_fusion.metrics.detection import coco_map, paired_bootstrap
from ivif_fusion.metrics.fusion import fusion_metrics
from ivif_fusion.models import checkpoint
from ivif_fusion.models.rsc import load_customized, pool_descriptor
from ivif_fusion.paths import DEFAULT_BACKBONE, require_data_root, resolve
from ivif_fusion.tasks import load_task

HERE = Path(__file__).resolve().parent
FUSION_KEYS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "Nabf")


def colour(fy: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Fused Y with the visible colour, quantised to uint8 as a published image would be."""
    return to_uint8(recombine(fy, vi))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE)
    ap.add_argument("--detector", default="models/yolo_det_msrs.pt")
    ap.add_argument("--rsc", default="models/rsc_det_msrs.pt")
    ap.add_argument("--task", default="detection")
    ap.add_argument("--score", type=float, default=0.001, help="detector score threshold for mAP")
    ap.add_argument("--dataset", default="MSRS", choices=("MSRS", "LLVIP"),
                    help="MSRS (split by --split, boxes labels_det/fusion) or LLVIP (all 50 shared pairs, person boxes)")
    ap.add_argument("--split", default="eval", choices=("eval", "val"),
                    help="MSRS eval-20 (report) or the val range, frames 1400+ (model selection)")
    ap.add_argument("--max-side", type=int, default=640, help="downscale pairs to this long side (LLVIP is 1280x1024)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=500, help="paired bootstrap resamples of the mAP50 difference")
    ap.add_argument("--out", default=str(HERE / "rsc_eval"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    vfn = checkpoint.load_vfn(resolve(args.backbone))
    model = load_customized(resolve(args.rsc), vfn)
    det = load_task(resolve(args.detector))
    det.cfg.score_threshold = args.score
    root = require_data_root() / args.dataset
    folder = PairedFolder(root, strict=False)
    if args.dataset == "MSRS":
        names, label_dir = msrs_split(folder.names, args.split), root / "labels_det" / "fusion"
    else:
        names, label_dir = list(folder.names), root / "labels_det"
    variants = ("ir", "visible", "generic", "rsc_closed_loop", "rsc_mean_descriptor")
    images: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    targets, metrics = [], {v: [] for v in variants}
    for n in names:
        s = folder.load(n)
        (ir, vi), _ = fit_max_side(args.max_side, s.thermal, s.visible)
        h, w = ir.shape
        # YOLO boxes are normalised, so they scale with the image
        targets.append(yolo_to_xyxy(read_yolo(label_dir / (Path(n).stem + ".txt")), w, h))
        ycc = rgb_to_ycbcr(vi)
        ir_t, y_t = torch.from_numpy(np.ascontiguousarray(ir))[None, None], torch.from_numpy(ycc[..., 0].copy())[None, None]
        with torch.inference_mode():
            f_ir, f_vi = model.encode(ir_t, y_t)
            gy = model.fuse_decode(f_ir, f_vi)[0, 0].numpy()
            generic = colour(gy, vi)
            desc = pool_descriptor(det.features(torch.from_numpy(generic).permute(2, 0, 1)[None].float() / 255))
            ry = model.fuse_decode(*model.customize(f_ir, f_vi, args.task, desc))[0, 0].numpy()
            my = model.fuse_decode(*model.customize(f_ir, f_vi, args.task, None))[0, 0].numpy()
        imgs = {"ir": to_uint8(np.repeat(ir[..., None], 3, 2)), "visible": to_uint8(vi), "generic": generic,
                "rsc_closed_loop": colour(ry, vi), "rsc_mean_descriptor": colour(my, vi)}
        for v in variants:
            images[v].append(imgs[v])
            if v in ("generic", "rsc_closed_loop", "rsc_mean_descriptor"):
                metrics[v].append(fusion_metrics(ir, vi, imgs[v]))
    rows, preds = {}, {}
    for v in variants:
        preds[v] = [det.predict(im)[0] for im in images[v]]
        r = coco_map(targets, preds[v], det.classes)
        row = {"mAP50": round(100 * r["mAP50"], 2), "mAP50-95": round(100 * r["mAP50-95"], 2),
               "AP50": {k: round(100 * x, 2) for k, x in r["AP50"].items()}}
        if metrics[v]:
            row.update({k: round(float(np.nanmean([m[k] for m in metrics[v]])), 4) for k in FUSION_KEYS})
        rows[v] = row
    # the spread of the difference: paired image bootstrap (metrics.detection.paired_bootstrap)
    boot = {v: {k: round(100 * x, 2) if k != "resamples" and k != "p_b_not_better" else x
                for k, x in paired_bootstrap(targets, preds["generic"], preds[v], det.classes,
                                             resamples=args.resamples, seed=0).items()}
            for v in ("rsc_closed_loop", "rsc_mean_descriptor")}
    g = rows["generic"]
    rel = {v: {k: round(100 * (rows[v][k] - g[k]) / g[k], 2) for k in ("Qabf", "VIF")}
           for v in ("rsc_closed_loop", "rsc_mean_descriptor")}
    split = ("MSRS eval-20" if args.split == "eval" else "MSRS val (frames 1400+)") if args.dataset == "MSRS" \
        else f"LLVIP ({len(names)} shared night pairs, never trained on)"
    res = {"split": split, "pairs": len(names), "boxes": int(sum(len(t) for t in targets)),
           "labels": str(label_dir.relative_to(root.parent)), "max_side": args.max_side, "score_threshold": args.score,
           "weights": {"backbone": args.backbone, "detector": args.detector, "rsc": args.rsc},
           "rsc_training": {k: checkpoint.load(resolve(args.rsc))["meta"].get(k) for k in ("steps", "seconds")},
           "results": rows, "fusion_change_vs_generic_percent": rel,
           "mAP50_difference_vs_generic_bootstrap": boot, "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"{split}: {len(names)} pairs, {res['boxes']} boxes ({res['labels']}), long side <= {args.max_side}, "
             f"score threshold {args.score}; detector {args.detector}, RSC {args.rsc}", "",
             "| images | mAP50 | mAP50-95 | AP50 person | AP50 car | AP50 bicycle | Qabf | VIF | SSIM | EN |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        r = rows[v]
        ap50 = r["AP50"]
        fm = [f"{r[k]:.4f}" if k in r else "-" for k in ("Qabf", "VIF", "SSIM", "EN")]
        ap = [ap50.get(c, float("nan")) for c in ("person", "car", "bicycle")]
        ap_txt = ["-" if not np.isfinite(a) else f"{a:.2f}" for a in ap]  # '-': no ground truth of the class
        lines.append(f"| {v} | {r['mAP50']:.2f} | {r['mAP50-95']:.2f} | " + " | ".join(ap_txt) + " | "
                     + " | ".join(fm) + " |")
    lines += ["", f"Qabf / VIF change vs generic (%): {json.dumps(rel)}", "",
              f"mAP50 difference vs generic, paired image bootstrap ({args.resamples} resamples; delta and 95 % "
              "interval in points, p = share of resamples where the RSC is not better):", ""]
    for v, b in boot.items():
        lines.append(f"- {v}: {b['delta']:+.2f} [{b['low']:+.2f}, {b['high']:+.2f}], p = {b['p_b_not_better']:.3f}")
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
