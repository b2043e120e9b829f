"""Cross-fitted gain of task-customized (two-task RSC) over generic fusion, for detection and segmentation.

Every labelled MSRS pair outside eval-20 and the guard band (the train and val frame ranges) belongs to one
of N folds of 100-frame blocks (:func:`ivif_fusion.data.splits.cross_fit_fold`). ``run.sh K N`` trains fold
K's detector, segmenter and two-task RSC without fold K (it neither trains them nor selects their epoch);
``judge --fold K`` runs them on fold K's pairs:

- generic: the backbone's fused image, the input both task networks were trained on;
- customized: the RSC's image for each task, with the RSC's stored mean descriptor (what ``Pipeline`` and
  ``ivif eval tasks`` run), so the detector sees its image and the segmenter its own.

It stores per-pair detections, per-pair confusion matrices and fusion metrics. ``table`` pools the folds
and reports mAP50 (pycocotools, score threshold 0.001) and mIoU car/person/bike (against the box-supervised
pseudo-masks: agreement with that method, not MSRS segmentation mIoU) with paired image bootstrap 95 %
intervals, and the relative change of VIF and Qabf of each task's image against the generic image.

The same two steps judge the shipped networks on MSRS eval-20 or val (``--split``, explicit weights).

Usage::

    python experiments/cross_fit/gain.py judge --runs DIR --folds 2 --fold 0 --masks-dir MASKS
    python experiments/cross_fit/gain.py table --judged DIR/fold0/judged.json DIR/fold1/judged.json \
        --out experiments/cross_fit/gain
    python experiments/cross_fit/gain.py judge --split eval --detector models/yolo_det_msrs.pt \
        --segmenter models/unet_seg_msrs.pt --rsc models/rsc_two_tasks_msrs.pt --masks-dir MASKS --to F.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ivif_fusion.data.splits import cross_fit_fold
from ivif_fusion.metrics.detection import coco_map, paired_bootstrap
from ivif_fusion.metrics.fusion import fusion_metrics
from ivif_fusion.metrics.segmentation import confusion_matrix, miou, paired_bootstrap_miou
from ivif_fusion.paths import DEFAULT_BACKBONE, require_data_root, resolve
from ivif_fusion.tasks import load_task
from ivif_fusion.tasks.evaluation import mask_targets, msrs_eval_set
from ivif_fusion.tasks.inputs import make_fuser, rsc_input

VARIANTS = ("generic", "customized")
TASKS = ("detection", "segmentation")
FUSION_KEYS = ("VIF", "Qabf", "SSIM", "EN", "SD", "SCD")


def fold_paths(runs: Path, fold: int) -> dict[str, Path]:
    base = runs / f"fold{fold}"
    return {"detection": base / "detector" / "yolo_det.pt", "segmentation": base / "segmenter" / "unet_seg.pt",
            "rsc": base / "rsc" / "rsc.pt"}


def judge(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.split:
        paths = {"detection": resolve(args.detector), "segmentation": resolve(args.segmenter), "rsc": resolve(args.rsc)}
    else:
        paths = fold_paths(Path(args.runs), args.fold)
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {missing} (for a fold: run experiments/cross_fit/run.sh first)")
    det, seg = load_task(paths["detection"]), load_task(paths["segmentation"])
    det.cfg.score_threshold = 0.001  # a complete PR curve for mAP
    generic = make_fuser("vfn", resolve(args.backbone))
    customized = rsc_input(paths["rsc"], resolve(args.backbone))
    data = msrs_eval_set(require_data_root(), det.classes, split=args.split or "trainval")
    keep = [i for i, n in enumerate(data.names) if args.split or cross_fit_fold(n, args.folds) == args.fold]
    keep = keep[:args.limit] if args.limit else keep
    masks = mask_targets(args.masks_dir, data)
    k = len(seg.cfg.classes)
    out: dict = {"set": data.name if args.split else f"fold {args.fold}/{args.folds}", "fold": args.fold, "names": [], "gt": [], "det": {v: [] for v in VARIANTS},
                 "conf": {v: [] for v in VARIANTS}, "fusion": {f"{v}_{t}": [] for v in VARIANTS for t in TASKS},
                 "weights": {key: str(p) for key, p in paths.items()} | {"backbone": args.backbone},
                 "classes": list(det.classes)}
    for i in keep:
        ir, vi = data.thermal[i], data.visible[i]
        g = np.clip(generic(ir, vi), 0, 1).astype(np.float32)
        images = {("generic", t): g for t in TASKS}
        for t in TASKS:
            images[("customized", t)] = np.clip(customized(ir, vi, t), 0, 1).astype(np.float32)
        out["names"].append(data.names[i])
        out["gt"].append(np.asarray(data.targets["detection"][i], dtype=np.float64).reshape(-1, 5).tolist())
        for v in VARIANTS:
            dets = det.predict(images[(v, "detection")])[0]
            out["det"][v].append([[d.class_id, d.x1, d.y1, d.x2, d.y2, d.score] for d in dets])
            pred = seg.predict(images[(v, "segmentation")])[0]
            out["conf"][v].append(confusion_matrix(pred, masks[i], k, seg.cfg.ignore_index).tolist())
            for t in TASKS:
                m = fusion_metrics(ir, vi, images[(v, t)])
                out["fusion"][f"{v}_{t}"].append({key: float(m[key]) for key in FUSION_KEYS})
        print(f"{out['set']}: {len(out['names'])}/{len(keep)} {data.names[i]}", flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    dest = Path(args.to) if args.to else Path(args.runs) / f"fold{args.fold}" / "judged.json"
    dest.write_text(json.dumps(out) + "\n")
    print(f"wrote {dest} ({len(keep)} pairs, {out['seconds']} s)")
    return 0


def _pool(files: list[str]) -> dict:
    pooled: dict = {"names": [], "fold": [], "gt": [], "det": {v: [] for v in VARIANTS},
                    "conf": {v: [] for v in VARIANTS}, "fusion": {}, "sets": []}
    for k, f in enumerate(files):
        j = json.loads(Path(f).read_text())
        pooled["classes"] = j["classes"]
        pooled["sets"].append(j["set"])
        pooled["names"] += j["names"]
        pooled["fold"] += [k] * len(j["names"])
        pooled["gt"] += [np.asarray(g, dtype=np.float64).reshape(-1, 5) for g in j["gt"]]
        for v in VARIANTS:
            pooled["det"][v] += [np.asarray(d, dtype=np.float64).reshape(-1, 6) for d in j["det"][v]]
            pooled["conf"][v] += j["conf"][v]
        for key, rows in j["fusion"].items():
            pooled["fusion"].setdefault(key, []).extend(rows)
    for v in VARIANTS:
        pooled["conf"][v] = np.asarray(pooled["conf"][v], dtype=np.int64)
    return pooled


def _task_rows(p: dict, idx: list[int], resamples: int) -> dict:
    """Generic and customized metric, their gain and its bootstrap interval, on the pairs ``idx``."""
    cls = p["classes"]
    gt = [p["gt"][i] for i in idx]
    det = {v: [p["det"][v][i] for i in idx] for v in VARIANTS}
    conf = {v: p["conf"][v][idx] for v in VARIANTS}
    k = conf["generic"].shape[1]
    res = {"pairs": len(idx), "boxes": int(sum(len(g) for g in gt))}
    res["detection"] = {v: 100 * coco_map(gt, det[v], cls)["mAP50"] for v in VARIANTS}
    res["segmentation"] = {v: 100 * miou(conf[v].sum(0), range(1, k))[0] for v in VARIANTS}
    if resamples:
        b = paired_bootstrap(gt, det["generic"], det["customized"], cls, resamples=resamples, seed=0)
        res["detection"]["gain"] = {key: 100 * b[key] if key in ("delta", "low", "high") else b[key] for key in b}
        b = paired_bootstrap_miou(conf["generic"], conf["customized"], range(1, k), resamples=resamples, seed=0)
        res["segmentation"]["gain"] = {key: 100 * b[key] if key in ("delta", "low", "high") else b[key] for key in b}
    fus = {}
    for t in TASKS:
        g = {key: float(np.mean([p["fusion"][f"generic_{t}"][i][key] for i in idx])) for key in FUSION_KEYS}
        c = {key: float(np.mean([p["fusion"][f"customized_{t}"][i][key] for i in idx])) for key in FUSION_KEYS}
        fus[t] = {key: 100 * (c[key] - g[key]) / g[key] for key in FUSION_KEYS}
    res["fusion_change_percent"] = fus
    return res


def table(args: argparse.Namespace) -> int:
    t0 = time.time()
    p = _pool(args.judged)
    every = list(range(len(p["names"])))
    parts = len(args.judged)
    res = {"pooled": _task_rows(p, every, args.resamples),
           "per_part": {p["sets"][k]: _task_rows(p, [i for i in every if p["fold"][i] == k], 0)
                        for k in range(parts)} if parts > 1 else {},
           "judged": args.judged, "resamples": args.resamples, "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    r = res["pooled"]
    what = (f"Cross-fitted over {r['pairs']} labelled MSRS pairs ({r['boxes']} boxes, labels_det/fusion; train and "
            f"val frame ranges, {parts} folds of 100-frame blocks); each pair judged by networks trained without its "
            "fold" if parts > 1 else f"{p['sets'][0]}: {r['pairs']} pairs, {r['boxes']} boxes (labels_det/fusion)")
    lines = [f"{what}. Customized: the two-task RSC's image for each task (stored mean descriptor). mIoU: car/person/"
             f"bike against box-supervised pseudo-masks. Gains: paired image bootstrap, {args.resamples} resamples, "
             "95 % interval; p = share of resamples where customized is not better.", "",
             "| set | pairs | task | generic | customized | gain | 95 % interval | p | VIF change | Qabf change |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [("pooled" if parts > 1 else p["sets"][0], r)] + list(res["per_part"].items())
    for name, row in rows:
        for t, unit in (("detection", "mAP50"), ("segmentation", "mIoU")):
            m, fc = row[t], row["fusion_change_percent"][t]
            gain = m.get("gain")
            span = f"[{gain['low']:+.2f}, {gain['high']:+.2f}]" if gain else "-"
            pval = f"{gain['p_b_not_better']:.3f}" if gain else "-"
            lines.append(f"| {name} | {row['pairs']} | {t} ({unit}) | {m['generic']:.2f} | {m['customized']:.2f} | "
                         f"{m['customized'] - m['generic']:+.2f} | {span} | {pval} | {fc['VIF']:+.2f} % | "
                         f"{fc['Qabf']:+.2f} % |")
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("judge", help="run fold K's networks on fold K's pairs")
    j.add_argument("--fold", type=int, default=0)
    j.add_argument("--folds", type=int, default=2)
    j.add_argument("--runs", default="", help="folder with fold0 .. fold{N-1} of run.sh")
    j.add_argument("--split", default="", choices=("", "eval", "val"),
                   help="judge the given networks on MSRS eval-20 or val instead of a fold")
    j.add_argument("--detector", default="models/yolo_det_msrs.pt")
    j.add_argument("--segmenter", default="models/unet_seg_msrs.pt")
    j.add_argument("--rsc", default="models/rsc_two_tasks_msrs.pt")
    j.add_argument("--to", default="", help="output file (default: RUNS/foldK/judged.json)")
    j.add_argument("--masks-dir", required=True)
    j.add_argument("--backbone", default=DEFAULT_BACKBONE)
    j.add_argument("--threads", type=int, default=1)
    j.add_argument("--limit", type=int, default=0, help="judge only the first N pairs of the fold (a smoke run)")
    t = sub.add_parser("table", help="pool judged files: gains with paired bootstrap intervals")
    t.add_argument("--judged", nargs="+", required=True, help="judged.json files (one per fold, or one split)")
    t.add_argument("--out", default=str(Path(__file__).resolve().parent / "gain"))
    t.add_argument("--resamples", type=int, default=500)
    args = ap.parse_args()
    return judge(args) if args.cmd == "judge" else table(args)


if __name__ == "__main__":
    raise SystemExit(main())
