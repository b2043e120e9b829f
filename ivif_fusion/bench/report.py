"""The markdown report and the must-show summary of an ``ivif bench`` result."""

from __future__ import annotations

from typing import Any


def md_stats(s: dict) -> str:
    return f"{s['median']:.1f} / {s['p90']:.1f}"


def summarize(result: dict) -> dict:
    """The headline numbers (ratios and speed-ups), computed from the measurements."""
    out: dict[str, Any] = {}
    f = result.get("fusion")
    if f:
        out["ort_backbone_over_torch"] = f["ratio_ort_over_torch"]["median_of_per_frame"]
        out["ort_backbone_over_torch_target"] = 0.35
        out["ort_backbone_over_seafusion_twin"] = f["ratio_backbone_over_seafusion_twin"]["median_of_per_frame"]
    p = result.get("pipeline")
    if p:
        for backend in {v["backend"] for v in p.values()}:
            one, three = p.get(f"{backend}/shared/1"), p.get(f"{backend}/shared/3")
            if one and three:
                out[f"{backend}_shared_3_over_1"] = (three["stages_ms"]["total"]["median"]
                                                     / one["stages_ms"]["total"]["median"])
            sep = p.get(f"{backend}/separate/3")
            if sep and three:
                out[f"{backend}_separate_3_over_shared_3"] = (sep["stages_ms"]["total"]["median"]
                                                              / three["stages_ms"]["total"]["median"])
        out["shared_3_over_1_target"] = 1.15
    return out


def load_note(machine: dict) -> str:
    """How far to trust absolute times: the 1-minute load at start against the usable CPUs."""
    load = (machine.get("loadavg_start") or [0.0])[0]
    if load > 0.75 * max(1, machine.get("usable_cpus") or 1):
        return "other jobs shared these CPUs, so absolute times are inflated; ratios come from interleaved runs."
    return "a quiet machine (the benchmark's own threads are the load); ratios come from interleaved runs."


def variants_table(f: dict) -> list[str]:
    """Markdown rows: the benchmarked backbone, the twin and every ``--arch`` variant, with ratios vs the twin."""
    twin = f["seafusion_twin"]
    bb = f.get("backbone", {})
    rows = [("backbone (" + bb.get("arch", "vfn") + ", as loaded)", bb.get("parameters"), bb.get("gflop_per_frame"),
             f["ort_backbone_ms"], f["ratio_backbone_over_seafusion_twin"], f["parity_max_abs_diff"]),
            ("SeAFusion twin", twin["parameters"], twin["gflop_per_frame"], f["ort_seafusion_twin_ms"], None,
             twin["parity_max_abs_diff"])]
    rows += [(f"`{spec}`", v["parameters"], v["gflop_per_frame"], v["ort_ms"], v["ratio_over_seafusion_twin"],
              v["parity_max_abs_diff"]) for spec, v in f["variants"].items()]
    lines = ["", "## Backbone variants (random init), ONNX Runtime, same run", "",
             "| variant | parameters | GFLOP/frame | ORT ms median / p90 | / twin: median (p90) of per-frame ratios | "
             "ONNX parity |", "|---|---|---|---|---|---|"]
    for name, params, gflop, ms, ratio, parity in rows:
        r = f"**{ratio['median_of_per_frame']:.3f}** ({ratio['p90_of_per_frame']:.3f})" if ratio else "1"
        worst = max(parity.values()) if parity else float("nan")
        lines.append(f"| {name} | {params:,} | {gflop:.2f} | {md_stats(ms)} | {r} | {worst:.1e} |"
                     if params is not None else f"| {name} | | | {md_stats(ms)} | {r} | {worst:.1e} |")
    return lines + ["", "GFLOP = 2 x conv multiply-accumulates (element-wise work not counted; the twin's "
                    "count includes its Sobel convs)."]


def to_markdown(result: dict) -> str:
    m = result["machine"]
    o = result["options"]
    lines = ["# ivif bench", "",
             f"{m['date']} · {m['cpu_model']} · {m['usable_cpus']} usable CPU(s) · torch {m['torch']} · "
             f"onnxruntime {m['onnxruntime']} · Python {m['python']}", "",
             f"{o['width']}x{o['height']}, {o['threads']} threads, {o['warmup']} warm-up + {o['frames']} timed frames; "
             "times in ms as **median / p90**.", "",
             f"Load average (1/5/15 min) at start {m['loadavg_start']}, at end {m.get('loadavg_end')}: "
             + load_note(m)]
    s = result.get("summary", {})
    lines += ["", "## Must-show ratios", "", "| quantity | measured | target |", "|---|---|---|"]
    if "ort_backbone_over_torch" in s:
        v = s["ort_backbone_over_torch"]
        lines.append(f"| ORT backbone / eager torch backbone (median of per-frame ratios) | {v:.3f} | "
                     f"<= 0.35 ({'met' if v <= 0.35 else 'NOT met'}) |")
    if "ort_backbone_over_seafusion_twin" in s:
        lines.append(f"| ORT backbone / ORT SeAFusion twin (median of per-frame ratios) | "
                     f"{s['ort_backbone_over_seafusion_twin']:.3f} | (reference) |")
    for b in ("torch", "onnxruntime"):
        if f"{b}_shared_3_over_1" in s:
            v = s[f"{b}_shared_3_over_1"]
            lines.append(f"| {b}: 3-task / 1-task fusion pipeline, shared backbone + heads | {v:.3f} | "
                         f"<= 1.15 ({'met' if v <= 1.15 else 'NOT met'}) |")
        if f"{b}_separate_3_over_shared_3" in s:
            lines.append(f"| {b}: 3 separate networks / shared backbone + 3 heads | "
                         f"{s[f'{b}_separate_3_over_shared_3']:.2f} | (sharing gain) |")
    f = result.get("fusion")
    if f:
        lines += ["", "## Backbone: eager torch vs ONNX Runtime", "", "| stage | median / p90 (ms) |", "|---|---|",
                  f"| torch backbone ({f.get('backbone', {}).get('arch', 'vfn').upper()} forward) | "
                  f"{md_stats(f['torch_backbone_ms'])} |",
                  f"| ONNX Runtime backbone | {md_stats(f['ort_backbone_ms'])} |",
                  f"| one 3x3 head (torch, on the shared map) | {md_stats(f['torch_head_ms'])} |",
                  f"| SeAFusion twin, ONNX Runtime (random weights) | {md_stats(f['ort_seafusion_twin_ms'])} |", "",
                  f"ORT/torch ratio: median of per-frame ratios {f['ratio_ort_over_torch']['median_of_per_frame']:.3f}, "
                  f"ratio of medians {f['ratio_ort_over_torch']['of_medians']:.3f}. ORT: {f['ort_graph_optimization']}. "
                  f"Export parity (max abs diff): {f['parity_max_abs_diff']}.", "",
                  "Backbone / SeAFusion twin, both in ONNX Runtime, same run, interleaved per frame: "
                  f"**{f['ratio_backbone_over_seafusion_twin']['median_of_per_frame']:.3f}** (median of per-frame "
                  f"ratios; ratio of medians {f['ratio_backbone_over_seafusion_twin']['of_medians']:.3f}). Twin: "
                  f"{f['seafusion_twin']['paper_parameters']:,} parameters as the paper counts them "
                  f"({f['seafusion_twin']['parameters']:,} here, Sobel fixed), "
                  f"{f['seafusion_twin']['gflop_per_frame']:.1f} GFLOP per frame. Load average during this section: "
                  f"{f['loadavg']['start']} at start, {f['loadavg']['end']} at end."]
        if f.get("variants"):
            lines += variants_table(f)
    p = result.get("pipeline")
    if p:
        stages: list[str] = []
        for v in p.values():
            for k in v["stages_ms"]:
                if k not in stages and k != "total":
                    stages.append(k)
        lines += ["", "## Fusion pipeline per pair (task networks excluded, see below)", "",
                  "| config | tasks | " + " | ".join(stages) + " | total |",
                  "|---|---|" + "---|" * (len(stages) + 1)]
        for name, v in p.items():
            cells = [md_stats(v["stages_ms"][k]) if k in v["stages_ms"] else "" for k in stages]
            lines.append(f"| {name} | {len(v['tasks'])} | " + " | ".join(cells)
                         + f" | **{md_stats(v['stages_ms']['total'])}** |")
        lines += ["", "Stages: preprocess = RGB->YCbCr; backbone / head:<task> = torch backend; backbone+heads = "
                  "one ONNX Runtime call for the whole graph; net:<task> = a separate full fusion network per task; "
                  "postprocess = colour recombination + uint8 for every task."]
    t = result.get("task_networks")
    if t:
        lines += ["", "## Task networks (eager torch, randomly initialised)", "", "| stage | network | median / p90 (ms) |",
                  "|---|---|---|"]
        for k, v in t["task_ms"].items():
            net = t["networks"].get(k.split(":", 1)[1], {})
            lines.append(f"| {k} | {net.get('network')} (input {net.get('input_size')}) | {md_stats(v)} |")
        lines.append(f"| task:fusion | {t['fusion_task_network']} | - |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result.get("notes", [])] + [""]
    return "\n".join(lines)
