"""What a backend checks before it runs an exported fusion graph.

An ivif ONNX graph carries in ``metadata_props``:

- ``ivif.format``: ``ivif-onnx/1``;
- ``ivif.head_names``: JSON list (output order);
- ``ivif.model_config``: JSON ``{"vfn": VFNConfig dict, "heads": [...]}``;
- ``ivif.weights_sha256``: :func:`weights_digest` of the exported module;
- ``ivif.source_files``: JSON ``{path: file sha256}`` of the checkpoints it came from.

:func:`check_graph_matches` refuses a graph that is not an ivif export, whose outputs are not
the configured heads in order, or whose weights checksum differs from the weights the pipeline
loaded, so a stale ONNX is never used silently. Refusal is :class:`GraphMismatch`, a
:class:`BackendUnavailable`: the backend selection logs it and falls back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .backends.base import BackendUnavailable

ONNX_NAME = "fusion.onnx"
FORMAT = "ivif-onnx/1"
META_FORMAT = "ivif.format"
META_HEADS = "ivif.head_names"
META_CONFIG = "ivif.model_config"
META_WEIGHTS = "ivif.weights_sha256"
META_SOURCES = "ivif.source_files"


class GraphMismatch(BackendUnavailable):
    """An exported graph (ONNX / engine) does not fit the configured weights or heads."""


def weights_digest(module: Any) -> str:
    """sha256 over a module's state dict: names, dtypes, shapes and raw bytes, in name order.

    Independent of the file format the weights came from, so an ONNX graph can be checked
    against whatever checkpoint the pipeline actually loaded.
    """
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (graph weights are not needed for this)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise GraphMismatch(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
    return {p.key: p.value for p in model.metadata_props}


def graph_output_names(path: str | os.PathLike) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def check_graph_matches(path: str | os.PathLike, meta: dict[str, str], output_names: list[str],
                        head_names: list[str], digest: str) -> None:
    """Raise :class:`GraphMismatch` unless an exported graph fits the loaded weights and heads.

    Checks, in order: it is an ivif export; its outputs are exactly ``head_names`` in order
    (both the metadata and the real graph outputs); its weights checksum equals ``digest``.
    """
    hint = "re-export it with `ivif export onnx` for this configuration"
    if meta.get(META_FORMAT) != FORMAT:
        raise GraphMismatch(f"{path} was not written by `ivif export onnx` (no '{META_FORMAT}: {FORMAT}' "
                            f"metadata); {hint}")
    try:
        meta_heads = json.loads(meta.get(META_HEADS, "null"))
    except json.JSONDecodeError:
        meta_heads = None
    if meta_heads != list(head_names) or list(output_names) != list(head_names):
        raise GraphMismatch(f"{path} has heads {meta_heads} (outputs {list(output_names)}) but the configured "
                            f"tasks need heads {list(head_names)} in that order; {hint}")
    got = meta.get(META_WEIGHTS, "")
    if got != digest:
        raise GraphMismatch(f"{path} was exported from other weights (weights sha256 {got[:12] or 'missing'}... "
                            f"vs loaded {digest[:12]}...); {hint}")


def check_onnx_file(path: str | os.PathLike, head_names: list[str], digest: str) -> None:
    """What every backend runs before loading a graph: the file exists, then :func:`check_graph_matches`."""
    if not Path(path).is_file():
        raise BackendUnavailable(f"no ONNX graph at {path}: run `ivif export onnx` first")
    check_graph_matches(path, read_metadata(path), graph_output_names(path), head_names, digest)
