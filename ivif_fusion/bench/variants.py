"""Backbone variants named on the command line, built at random init for ``ivif bench fusion --arch``.

A variant is ``ARCH`` or ``ARCH:KEY=VALUE,KEY=VALUE`` (the keys of that architecture's config,
values read as YAML), e.g. ``vfn2`` or ``vfn2:stride=2,channels=32``. Timing does not depend on
the weights, so candidates are compared before any of them is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


class VariantError(UserError, ValueError):
    """A ``--arch`` variant that cannot be parsed or built."""


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``'vfn2:channels=64,depth=6'`` -> ``('vfn2', {'channels': 64, 'depth': 6})``."""
    arch, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise VariantError(f"--arch {spec!r}: expected KEY=VALUE after ':', got {item!r}")
        params[key.strip()] = yaml.safe_load(value)
    return arch.strip(), params


def variant_info(model: Any, width: int, height: int) -> dict:
    """Architecture, config, parameters and conv GFLOP (2 x MAC) per ``width`` x ``height`` frame."""
    from ..models.backbones import arch_of, conv_macs

    return {"arch": arch_of(model), "config": model.cfg.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "gflop_per_frame": round(2 * conv_macs(model, height, width) / 1e9, 3)}


def build_variants(specs: tuple | list, seed: int, workdir: Path, width: int, height: int) -> dict[str, dict]:
    """Per variant: :func:`variant_info`, plus its exported ONNX path (``onnx``) and export parity.

    Each is exported as a deployment graph (backbone + generic head) with the parity check on,
    so a variant that ONNX Runtime computes differently from torch fails here, not in the timing.
    """
    import torch

    from ..models.backbones import build_backbone
    from ..models.heads import MultiHeadFusion
    from ..runtime.onnx_export import export_onnx

    out: dict[str, dict] = {}
    for i, spec in enumerate(specs):
        arch, params = parse_variant(spec)
        torch.manual_seed(seed)
        try:
            model = build_backbone(arch, **params).eval()
        except (TypeError, ValueError) as e:
            raise VariantError(f"--arch {spec!r}: {e}") from e
        res = export_onnx(MultiHeadFusion(model), workdir / f"variant{i}", verify=True)
        out[spec] = {**variant_info(model, width, height), "parity_max_abs_diff": res.parity, "onnx": res.path}
    return out


def ort_runner(session: Any):  # noqa: ANN201
    """``run(ir, y)`` of an ONNX Runtime session of a graph with inputs ``ir`` and ``y``."""
    return lambda x, y: session.run(None, {"ir": x, "y": y})
