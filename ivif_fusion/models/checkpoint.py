"""Checkpoints that carry their model config and training metadata.

Format (a ``torch.save`` dict): ``{"format": "ivif-checkpoint", "version": 1, "kind": str,
"config": dict, "state_dict": dict, "meta": dict, ...extra}``. Loading never needs a flag the
user must remember: the model is rebuilt from ``config``. A missing file, another kind, or
weights that do not fit the config raise :class:`CheckpointError` with the reason.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from ..errors import UserError

FORMAT = "ivif-checkpoint"
VERSION = 1


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, of the wrong kind, or does not match its model."""


def save(path: str | os.PathLike, kind: str, config: dict, state_dict: dict, meta: dict | None = None,
         **extra: Any) -> Path:
    """Write atomically (tmp file + rename) so a crash never leaves a half checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "config": plain(config),
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": plain(meta or {}), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def plain(obj: Any) -> Any:
    """Config/metadata reduced to plain Python types, so weights-only loading accepts it."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)) and type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    return str(obj)


def load(path: str | os.PathLike, kind: str | None = None) -> dict:
    """Read a checkpoint dict, checking its format and (optionally) its kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        # TorchVersion is allowed for checkpoints written before metadata was made plain.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ivif_fusion checkpoint (no '{FORMAT}' header)")
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} holds a '{ckpt.get('kind')}' model, expected '{kind}'")
    return ckpt


def load_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """Strict state-dict load with a readable message on missing/unexpected/mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:4]}")
        raise CheckpointError(f"{source}: weights do not match the model ({'; '.join(parts)})")
    model.load_state_dict(state)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_backbone(path: str | os.PathLike):  # noqa: ANN201
    """Rebuild the fusion backbone stored in a ``vfn`` checkpoint (eval mode).

    The stored config names the architecture (``arch``: ``vfn`` when absent, ``vfn2``, see
    :mod:`ivif_fusion.models.backbones`), so any backbone loads without a flag.
    """
    from .backbones import backbone_from_config

    ckpt = load(path, "vfn")
    try:
        model = backbone_from_config(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: backbone config unreadable ({type(e).__name__}: {e})") from e
    load_state(model, ckpt["state_dict"], str(path))
    return model.eval()


load_vfn = load_backbone  # the name the training jobs and tools call it by
