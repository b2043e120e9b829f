"""Does int8 quantization make the ONNX Runtime backbone faster on this CPU? (issue 7, ORT/torch target)

Static QDQ quantization (``onnxruntime.quantization.quantize_static``: uint8 activations,
per-channel int8 weights) of the shipped ``models/onnx/fusion.onnx``, calibrated on MSRS
*train* pairs (frames 131-1399, ``--calib`` of them), then timed against the fp32 graph on
MSRS eval-20 pairs at 640x480, both with the project's session options (``session_options``:
ORT_ENABLE_ALL, ``--threads`` intra-op threads, no spinning). Runs are interleaved per frame, so
load from other processes affects both alike; the reported ratio is the median of per-frame
int8/fp32 ratios. Quality: mean and max absolute difference of the fused Y (0..1) against fp32,
and Qabf / VIF of both on the timed pairs.

Usage: ``python benchmarks/ort_int8.py`` -> ``benchmarks/ort_int8.{json,md}``. The quantized
graph is written to a temporary folder and not kept: it is not a shipped artefact.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ivif_fusion.colour import rgb_to_ycbcr, ycbcr_to_rgb
from ivif_fusion.data.paired import PairedFolder
from ivif_fusion.data.splits import msrs_split
from ivif_fusion.imageops import to_uint8
from ivif_fusion.metrics.fusion import fusion_metrics
from ivif_fusion.paths import require_data_root, resolve
from ivif_fusion.runtime.backends.onnxruntime_backend import session_options

HERE = Path(__file__).resolve().parent


def feeds(folder: PairedFolder, names: list[str]) -> list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for n in names:
        s = folder.load(n)
        ycc = rgb_to_ycbcr(s.visible)
        feed = {"ir": s.thermal[None, None].astype(np.float32), "y": ycc[..., :1].transpose(2, 0, 1)[None].copy()}
        out.append((feed, s.thermal, s.visible, ycc))
    return out


def main() -> int:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", default="models/onnx/fusion.onnx")
    ap.add_argument("--calib", type=int, default=16, help="MSRS train pairs used for calibration")
    ap.add_argument("--pairs", type=int, default=6, help="MSRS eval-20 pairs timed")
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the pairs (after one warm-up pass)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "ort_int8"))
    args = ap.parse_args()

    src = resolve(args.onnx)
    root = require_data_root() / "MSRS"
    folder = PairedFolder(root, strict=False)
    calib = feeds(folder, msrs_split(folder.names, "train")[:args.calib])
    timed = feeds(folder, msrs_split(folder.names, "eval")[:args.pairs])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):  # noqa: ANN202
            item = next(self.it, None)
            return None if item is None else item[0]

    with tempfile.TemporaryDirectory() as tmp:
        pre, q8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(q8), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        fp32 = ort.InferenceSession(str(src), session_options(args.threads), providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(str(q8), session_options(args.threads), providers=["CPUExecutionProvider"])
        out_name = fp32.get_outputs()[0].name
        t32, t8, ratios, mean_d, max_d, q = [], [], [], [], [], {"fp32": [], "int8": []}
        for rnd in range(args.rounds + 1):
            for feed, ir, vi, ycc in timed:
                t0 = time.perf_counter()
                a = fp32.run([out_name], feed)[0]
                t1 = time.perf_counter()
                b = int8.run([out_name], feed)[0]
                t2 = time.perf_counter()
                if rnd == 0:  # warm-up pass: quality only
                    d = np.abs(a - b)
                    mean_d.append(float(d.mean()))
                    max_d.append(float(d.max()))
                    for k, fy in (("fp32", a), ("int8", b)):
                        c = ycc.copy()
                        c[..., 0] = fy[0, 0]
                        m = fusion_metrics(ir, vi, to_uint8(ycbcr_to_rgb(c)))
                        q[k].append((m["Qabf"], m["VIF"]))
                    continue
                t32.append((t1 - t0) * 1e3)
                t8.append((t2 - t1) * 1e3)
                ratios.append((t2 - t1) / (t1 - t0))

    quality = {k: {"Qabf": round(float(np.mean([x[0] for x in v])), 4), "VIF": round(float(np.mean([x[1] for x in v])), 4)}
               for k, v in q.items()}
    res = {"onnx": args.onnx, "calibration_pairs": len(calib), "timed_pairs": len(timed), "rounds": args.rounds,
           "threads": args.threads, "onnxruntime": ort.__version__, "machine": platform.processor() or platform.machine(),
           "median_ms": {"fp32": round(statistics.median(t32), 1), "int8": round(statistics.median(t8), 1)},
           "int8_over_fp32": round(statistics.median(ratios), 3),
           "abs_diff_vs_fp32": {"mean": round(float(np.mean(mean_d)), 5), "max": round(float(np.max(max_d)), 4)},
           "quality": quality}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"# ONNX Runtime int8 (static QDQ) vs fp32 backbone, 640x480, {args.threads} threads", "",
          f"onnxruntime {ort.__version__}; calibration on {len(calib)} MSRS train pairs; timed on {len(timed)} "
          f"MSRS eval-20 pairs x {args.rounds} interleaved rounds. Command: `python benchmarks/ort_int8.py`.", "",
          "| graph | median ms | Qabf | VIF |", "|---|---|---|---|",
          f"| fp32 | {res['median_ms']['fp32']} | {quality['fp32']['Qabf']} | {quality['fp32']['VIF']} |",
          f"| int8 | {res['median_ms']['int8']} | {quality['int8']['Qabf']} | {quality['int8']['VIF']} |", "",
          f"int8 / fp32 time (median of per-frame ratios): **{res['int8_over_fp32']}**; fused-Y difference vs fp32: "
          f"mean {res['abs_diff_vs_fp32']['mean']}, max {res['abs_diff_vs_fp32']['max']}.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
