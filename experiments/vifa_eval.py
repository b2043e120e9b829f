"""VIFA evaluation on MSRS eval-20: per task, head output vs its reference model vs generic fusion.

For every head of a 'vifa' checkpoint:

- the task metric where a task network exists (detection: pycocotools mAP50 / mAP50-95 with
  ``--detector``, default models/yolo_det_msrs.pt; segmentation: mIoU car/person/bike and incl. background with
  ``--segmenter`` (default models/unet_seg_msrs.pt) against the masks of ``--masks-dir``), via :func:`ivif_fusion.tasks.evaluation.evaluate_tasks`;
- the mean fusion metrics (:func:`ivif_fusion.metrics.fusion.fusion_metrics`) of the head output,
  of the task's reference model (from the checkpoint's ``meta.reference_weights``) and of the
  generic fusion (the teacher);
- how closely the head reproduces its reference: PSNR (dB) and mean |head - reference| of fused Y;
- the head's size as a percentage of the backbone.

Usage: ``python experiments/vifa_eval.py [--vifa models/vifa_msrs.pt] [--masks-dir DIR] [--out docs/results_vifa.md]``;
also writes experiments/vifa_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _y_fn(kind: str, path: str, teacher, task: str):  # noqa: ANN001, ANN202
    """(ir (H, W), y (H, W)) -> fused Y (H, W) for a reference of the given kind."""
    import torch

    from ivif_fusion.models.checkpoint import load_vfn
    from ivif_fusion.paths import resolve

    if kind == "teacher":
        net = teacher
    elif kind == "vfn":
        net = load_vfn(resolve(path))
    elif kind == "rsc":
        from ivif_fusion.models.rsc import load_customized

        cf = load_customized(resolve(path), teacher)
        return lambda ir, y: cf.fuse_numpy(ir, y, task)
    else:
        raise ValueError(f"unknown reference kind {kind}")

    def f(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(ir)[None, None], torch.from_numpy(y)[None, None])[0, 0].numpy()

    return f


def main(argv: list[str] | None = None) -> int:  # noqa: C901, PLR0915 - one linear report
    import torch

    from ivif_fusion.colour import luminance, recombine
    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.data.splits import msrs_split
    from ivif_fusion.metrics.fusion import fusion_metrics
    from ivif_fusion.models import checkpoint
    from ivif_fusion.models.vifa import head_parameters, load_vifa_model
    from ivif_fusion.paths import require_data_root, resolve
    from ivif_fusion.tasks.evaluation import FUSION_COLUMNS, evaluate_tasks, msrs_eval_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vifa", default="models/vifa_msrs.pt")
    ap.add_argument("--detector", default="models/yolo_det_msrs.pt")
    ap.add_argument("--segmenter", default="models/unet_seg_msrs.pt")
    ap.add_argument("--masks-dir", default="", help="class-id masks for the segmentation head's mIoU "
                    "(`ivif data masks --dataset MSRS --out DIR`); without it the head has fusion metrics only")
    ap.add_argument("--score", type=float, default=0.001,
                    help="detector score threshold for mAP (low, so the PR curve is complete; as experiments/rsc_eval.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results_vifa.md"))
    ap.add_argument("--json", default=str(ROOT / "experiments" / "vifa_eval.json"))
    ap.add_argument("--limit", type=int, default=0, help="smoke test: only the first N pairs (no detection)")
    ap.add_argument("--bench", default=str(ROOT / "benchmarks" / "vifa_sharing.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vpath = resolve(args.vifa)
    ck = checkpoint.load(vpath, "vifa")
    meta = ck["meta"]
    model = load_vifa_model(vpath)
    tasks = [n for n in model.head_names]
    teacher = checkpoint.load_vfn(resolve(meta["teacher"])) if meta.get("teacher") else model.backbone
    root = require_data_root()
    det_path = resolve(args.detector) if args.detector else None
    det, data = None, None
    if "detection" in tasks and det_path is not None and det_path.is_file() and not args.limit:
        from ivif_fusion.tasks import load_task

        det = load_task(det_path).eval()
        det.cfg.score_threshold = args.score
        data = msrs_eval_set(root, det.classes, "eval", "fusion", "detection")
        names = data.names
        pairs = [SimpleNamespace(thermal=a, visible=b) for a, b in zip(data.thermal, data.visible, strict=True)]
    else:
        folder = PairedFolder(root / "MSRS", strict=False)
        names = msrs_split(folder.names, "eval")
        if args.limit:
            names = names[:args.limit]
        pairs = [folder.load(n) for n in names]
    set_name = "MSRS eval-20" if len(names) == 20 else f"MSRS eval ({len(names)} pairs)"
    t0 = time.time()

    def head_y(task: str):  # noqa: ANN202
        def f(ir: np.ndarray, y: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                sh = model.backbone.shared_features(torch.from_numpy(ir)[None, None], torch.from_numpy(y)[None, None])
                return model.head(task, sh)[0, 0].numpy()
        return f

    generic = _y_fn("teacher", "", teacher, "")
    ys = {}  # (column, task) -> list of fused Y per pair
    cache_generic = [generic(s.thermal, luminance(s.visible)) for s in pairs]
    refs_used = meta.get("reference_weights", {})
    for t in tasks:
        ys[("head", t)] = [head_y(t)(s.thermal, luminance(s.visible)) for s in pairs]
        r = refs_used.get(t, {"kind": "teacher", "path": meta.get("teacher", "")})
        if r["kind"] == "teacher":
            ys[("reference", t)] = cache_generic
        else:
            fn = _y_fn(r["kind"], r["path"], teacher, r.get("task", t))
            ys[("reference", t)] = [fn(s.thermal, luminance(s.visible)) for s in pairs]

    # fusion metrics per (column, task); the generic column once
    def fm_mean(y_list: list[np.ndarray]) -> dict:
        ms = [fusion_metrics(s.thermal, s.visible, recombine(y, s.visible)) for s, y in zip(pairs, y_list, strict=True)]
        return {k: float(np.nanmean([m[k] for m in ms])) for k in ms[0]}

    fusion = {"generic": fm_mean(cache_generic)}
    fidelity = {}
    for t in tasks:
        fusion[("head", t)] = fm_mean(ys[("head", t)])
        fusion[("reference", t)] = (fusion["generic"] if ys[("reference", t)] is cache_generic
                                    else fm_mean(ys[("reference", t)]))
        d = [np.mean((a - b) ** 2) for a, b in zip(ys[("head", t)], ys[("reference", t)], strict=True)]
        ad = [np.mean(np.abs(a - b)) for a, b in zip(ys[("head", t)], ys[("reference", t)], strict=True)]
        gd = [np.mean(np.abs(a - b)) for a, b in zip(ys[("head", t)], cache_generic, strict=True)]
        rg = [np.mean(np.abs(a - b)) for a, b in zip(ys[("reference", t)], cache_generic, strict=True)]
        fidelity[t] = {"psnr_head_vs_reference_db": float(10 * np.log10(1.0 / max(np.mean(d), 1e-12))),
                       "mae_head_vs_reference": float(np.mean(ad)), "mae_head_vs_generic": float(np.mean(gd)),
                       "mae_reference_vs_generic": float(np.mean(rg))}

    # task metrics where a task network exists
    task_results = {}

    def column(key: str, task: str):  # noqa: ANN202
        y_list = cache_generic if key == "generic" else ys[(key, task)]

        def fn(ir: np.ndarray, vi: np.ndarray, t: str) -> np.ndarray:  # noqa: ARG001
            i = next(j for j, s in enumerate(pairs) if s.thermal is ir)  # evaluate_tasks passes data.thermal items
            return recombine(y_list[i], vi)
        return fn

    def columns(task: str) -> dict:
        return {"VIFA head": column("head", task), "reference": column("reference", task),
                "generic (teacher)": column("generic", task)}

    if det is not None:
        res = evaluate_tasks({"detection": det}, columns("detection"), data, with_fusion_metrics=False, progress=False)
        task_results["detection"] = {k: {m: v[m] for m in ("mAP50", "mAP50-95")}
                                     for k, v in res["tasks"]["detection"]["rows"].items()}
    seg_path = resolve(args.segmenter) if args.segmenter else None
    if det is not None and "segmentation" in tasks and seg_path is not None and args.masks_dir:
        from ivif_fusion.tasks import load_task
        from ivif_fusion.tasks.evaluation import mask_targets

        data.targets["segmentation"] = mask_targets(args.masks_dir, data)
        res = evaluate_tasks({"segmentation": load_task(seg_path).eval()}, columns("segmentation"), data,
                             with_fusion_metrics=False, progress=False)
        task_results["segmentation"] = {k: {m: v[m] for m in ("mIoU_objects", "mIoU")}
                                        for k, v in res["tasks"]["segmentation"]["rows"].items()}
    head_p, bb_p = head_parameters(model)
    out = {"set": set_name, "pairs": len(names), "vifa": str(args.vifa), "tasks": tasks,
           "references": meta.get("references", {}), "reference_weights": refs_used,
           "fusion": {(k if isinstance(k, str) else f"{k[0]}:{k[1]}"): v for k, v in fusion.items()},
           "fidelity": fidelity, "task_metrics": task_results,
           "head_parameters": head_p, "backbone_parameters": bb_p, "head_percent": 100.0 * head_p / bb_p,
           "seconds": round(time.time() - t0, 1), "key_channels": meta.get("key_channels", {})}
    Path(args.json).write_text(json.dumps(out, indent=1, default=float))

    # ---- markdown
    cols = [c for c in FUSION_COLUMNS]
    L = ["# VIFA results (MSRS eval-20)", "",
         f"Checkpoint `{args.vifa}`: one shared VFN backbone + {len(tasks)} one-layer heads ({', '.join(tasks)}); "
         f"one head = {head_p} parameters = {100.0 * head_p / bb_p:.2f} % of the backbone ({bb_p}). "
         f"Evaluated on {set_name} ({len(names)} pairs, frame number <= 107, never trained on).", "",
         "## Task metric: head vs its reference vs generic fusion", ""]
    if task_results:
        L += [f"Detector `{args.detector}`, score threshold {args.score} (complete PR curve, as "
              "experiments/rsc_eval.py), boxes `labels_det/fusion`."
              + (f" Segmenter `{args.segmenter}` against the box-supervised pseudo-masks in `{args.masks_dir}` "
                 "(agreement with that method, not MSRS segmentation mIoU)." if "segmentation" in task_results else ""),
              "", "| task | input | headline (%) | second (%) |", "|---|---|---|---|"]
        titles = {"detection": ("mAP50", "mAP50-95"), "segmentation": ("mIoU_objects", "mIoU")}
        label = {"mIoU_objects": "mIoU car/person/bike", "mIoU": "mIoU incl. background"}
        for t, rows in task_results.items():
            a, b = titles[t]
            for k, v in rows.items():
                L.append(f"| {t} | {k} | {label.get(a, a)} {100 * v[a]:.2f} | {label.get(b, b)} {100 * v[b]:.2f} |")
        for t, (a, _) in titles.items():
            d = task_results.get(t)
            if d:
                gap = 100 * (d["VIFA head"][a] - d["reference"][a])
                L += ["", f"{t.capitalize()} head - reference: {gap:+.1f} {label.get(a, a)} points "
                          f"({'within' if abs(gap) <= 1 else 'outside'} the 1-point target); head - generic: "
                          f"{100 * (d['VIFA head'][a] - d['generic (teacher)'][a]):+.1f}."]
    else:
        L.append("No task network was available for these heads (see notes).")
    L += ["", "## Fusion metrics (mean over the pairs)", "",
          "| task | input | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    L.append("| (all) | generic (teacher) | " + " | ".join(f"{fusion['generic'][c]:.3f}" for c in cols) + " |")
    for t in tasks:
        for key, label in (("head", "VIFA head"), ("reference", "reference")):
            L.append(f"| {t} | {label} | " + " | ".join(f"{fusion[(key, t)][c]:.3f}" for c in cols) + " |")
    L += ["", "## How closely each head reproduces its reference (fused Y, 0..1)", "",
          "| task | reference | PSNR head vs ref (dB) | MAE head vs ref | MAE head vs generic | "
          "MAE ref vs generic | share of the ref's deviation reproduced |", "|---|---|---|---|---|---|---|"]
    for t in tasks:
        f = fidelity[t]
        r = refs_used.get(t, {"kind": "teacher"})
        label = "teacher (generic)" if r["kind"] == "teacher" else f"{r['kind']} `{Path(r['path']).name}`"
        share = (1 - f["mae_head_vs_reference"] / f["mae_reference_vs_generic"]
                 if f["mae_reference_vs_generic"] > 1e-9 else float("nan"))
        L.append(f"| {t} | {label} | {f['psnr_head_vs_reference_db']:.1f} | {f['mae_head_vs_reference']:.4f} | "
                 f"{f['mae_head_vs_generic']:.4f} | {f['mae_reference_vs_generic']:.4f} | "
                 + ("n/a (ref = generic)" if share != share else f"{100 * share:.0f} %") + " |")
    L += ["", "MAE = mean |difference| of fused Y over pixels and pairs (0..1 scale). The share is "
          "1 - MAE(head, ref) / MAE(ref, generic): 100 % = the head reproduces its reference exactly, 0 % = "
          "it is no closer to the reference than the generic image is."]
    kc = meta.get("key_channels", {})
    if kc:
        L += ["", "## Key channels", "",
              f"Layer `{kc.get('layer')}`: {len(kc.get('channels', []))} key channels from "
              f"{len(sum(kc.get('clusters', []), []))} channels in {len(kc.get('clusters', []))} clusters "
              f"(threshold {meta['train_config'].get('threshold')}, {meta['train_config'].get('linkage')} linkage, "
              f"{kc.get('n_images')} images); clusters with more than one member: "
              f"{[c for c in kc.get('clusters', []) if len(c) > 1] or 'none'}."]
    bench = Path(args.bench)
    if bench.is_file():
        b = json.loads(bench.read_text())
        s = b["summary"]
        L += ["", "## Speed (benchmarks/vifa_sharing.md)", "",
              f"Pipeline, torch, 640x480, {b['threads']} threads, {b['frames']} frames round-robin, "
              f"load average {b['machine']['loadavg_start']} -> {b['machine']['loadavg_end']}:", "",
              "| measure | value | target / reference |", "|---|---|---|",
              f"| 3 heads / 1 head | {s['shared3_over_shared1']:.3f} | <= 1.15 |",
              f"| speedup 2 tasks (2 separate networks / shared + 2 heads) | {s['speedup_2_tasks']:.2f}x | "
              "VIFA: 1.85-1.98x (Jetson Nano) |",
              f"| speedup 3 tasks | {s['speedup_3_tasks']:.2f}x | |"]
        st = b.get("shared3_stages_ms")
        if st:
            L += ["", "Stage split of the 3-head pipeline (median ms): "
                  + ", ".join(f"{k} {v['median']:.1f}" for k, v in st.items()) + "."]
    L += ["", "## Notes", ""]
    for t in tasks:
        L.append(f"- `{t}` reference: {meta.get('references', {}).get(t, '?')}.")
    if "detection" in tasks and not task_results:
        L.append(f"- No detection network at {args.detector}: no mAP.")
    L.append(f"- Segmenter: {args.segmenter}, masks {args.masks_dir}." if "segmentation" in task_results else
             "- No segmenter or mask folder was given, so the `segmentation` head has fusion metrics only.")
    L.append(f"- Training: {meta.get('steps')} steps, seconds {meta.get('seconds')}; final losses "
             f"{meta.get('final_losses')}.")
    again = "python experiments/vifa_eval.py" + (f" --masks-dir {args.masks_dir}" if args.masks_dir else "")
    L.append(f"- Evaluation took {out['seconds']} s. Regenerate: `{again}` (masks: `ivif data masks --dataset MSRS "
             "--out DIR`).")
    Path(args.out).write_text("\n".join(L) + "\n")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
