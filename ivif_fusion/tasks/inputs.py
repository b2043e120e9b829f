"""Inputs of task networks: IR only, visible only, fused variants, and the loader registry.

An *input* is a function ``f(ir (H, W), vi (H, W, 3), task_name) -> (H, W, 3)`` float32 RGB 0..1;
the task name lets task-customized fusion (RSC, VIFA) give each task its own image.
:func:`make_fuser` gives the fixed fusion modes (what task networks are trained on);
:func:`input_from_checkpoint` turns a checkpoint into an input with the loader registered for its
kind in :data:`INPUT_LOADERS` (``vfn``, ``rsc`` and ``vifa`` are registered here; other kinds
with :func:`register_input_loader`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..colour import luminance, recombine
from ..errors import UserError
from ..paths import DEFAULT_BACKBONE, resolve

InputFn = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
#: kind of a checkpoint -> loader(path, backbone_path) -> InputFn
INPUT_LOADERS: dict[str, Callable[[Path, Path | None], InputFn]] = {}
FUSION_MODES = ("vfn", "max", "visible", "ir")


class InputError(UserError):
    """An input cannot be made: unknown fusion mode or checkpoint kind, missing weights, unknown task."""


def make_fuser(mode: str, weights: str | Path = DEFAULT_BACKBONE,
               device: str = "cpu") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(ir (H, W), vi (H, W, 3)) -> (H, W, 3)`` float32 RGB 0..1 for a fusion mode.

    ``max``: pixel-wise max of IR and visible Y, recombined with the visible colour;
    ``vfn``: the learned backbone's fused Y (VFN or VFN2) recombined with the visible colour;
    ``visible`` / ``ir``: one modality only (IR as grey RGB).
    """
    if mode == "visible":
        return lambda thermal, visible: visible.astype(np.float32)
    if mode == "ir":
        return lambda thermal, visible: np.repeat(thermal[..., None], 3, axis=2).astype(np.float32)
    if mode == "max":
        return lambda thermal, visible: recombine(np.maximum(thermal, luminance(visible)), visible)
    if mode == "vfn":
        import torch

        from ..models.checkpoint import load_vfn

        path = resolve(weights)
        if not path.is_file():
            raise InputError(f"fusion 'vfn' needs the backbone checkpoint {path}, which is missing "
                             "(train it with `ivif train fusion`, or use --fusion max)")
        net = load_vfn(path).to(device)

        def fuse(thermal: np.ndarray, visible: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t_ir = torch.from_numpy(thermal)[None, None].to(device)
                t_y = torch.from_numpy(luminance(visible))[None, None].to(device)
                y = net(t_ir, t_y)[0, 0].cpu().numpy()
            return recombine(y, visible)

        return fuse
    raise InputError(f"unknown fusion mode '{mode}'; choose from {list(FUSION_MODES)}")


def register_input_loader(kind: str, loader: Callable[[Path, Path | None], InputFn]) -> None:
    """Let ``ivif eval tasks --input NAME=CKPT`` build an input from checkpoints of ``kind``."""
    INPUT_LOADERS[kind] = loader


def vfn_input(path: Path, backbone: Path | None) -> InputFn:  # noqa: ARG001 - the checkpoint is the backbone
    """Generic fusion by a VFN checkpoint, the same image for every task."""
    fuse = make_fuser("vfn", path)
    return lambda thermal, visible, task: fuse(thermal, visible)


def rsc_input(path: Path, backbone: Path | None) -> InputFn:
    """Task-customized fusion: backbone + RSC; the task's fused Y recombined with the visible colour."""
    from ..models.checkpoint import load_vfn
    from ..models.rsc import load_customized

    if backbone is None or not Path(backbone).is_file():
        raise InputError(f"RSC input {path} needs the backbone it customizes (--backbone), got {backbone}")
    net = load_customized(path, load_vfn(backbone))

    def fuse(thermal: np.ndarray, visible: np.ndarray, task: str) -> np.ndarray:
        if task not in net.tasks:
            raise InputError(f"RSC {path} has no branch for task '{task}' (it has {list(net.tasks)})")
        return recombine(net.fuse_numpy(thermal, luminance(visible), task), visible)

    return fuse


def vifa_input(path: Path, backbone: Path | None) -> InputFn:  # noqa: ARG001 - the checkpoint holds its backbone
    """VIFA: each task's head output recombined with the visible colour."""
    from ..models.vifa import head_fuse_numpy, load_vifa_model

    model = load_vifa_model(path)

    def fuse(thermal: np.ndarray, visible: np.ndarray, task: str) -> np.ndarray:
        if task not in model.heads:
            raise InputError(f"VIFA {path} has no head for task '{task}' (it has {list(model.heads)})")
        return recombine(head_fuse_numpy(model, thermal, luminance(visible), task), visible)

    return fuse


register_input_loader("vfn", vfn_input)
register_input_loader("rsc", rsc_input)
register_input_loader("vifa", vifa_input)


def input_from_checkpoint(path: str | os.PathLike, backbone: str | os.PathLike | None = None) -> InputFn:
    """An input function from a checkpoint, by its kind (see :data:`INPUT_LOADERS`)."""
    from ..models import checkpoint

    p = Path(path)
    kind = checkpoint.load(p).get("kind")
    if kind not in INPUT_LOADERS:
        raise InputError(f"{p} holds a '{kind}' checkpoint and no input loader is registered for it "
                         f"(known: {sorted(INPUT_LOADERS)}); pass a callable to evaluate_tasks instead")
    return INPUT_LOADERS[kind](p, Path(backbone) if backbone else None)


def standard_inputs(backbone: str | os.PathLike | None) -> dict[str, InputFn]:
    """IR only, visible only, pixel-max fused and (when ``backbone`` is given) the generic fused image of that backbone."""
    ir_fn, vi_fn = make_fuser("ir"), make_fuser("visible")
    inputs: dict[str, InputFn] = {"IR only": lambda thermal, visible, t: ir_fn(thermal, visible),
                                  "visible only": lambda thermal, visible, t: vi_fn(thermal, visible)}
    mx = make_fuser("max")
    inputs["pixel-max fused"] = lambda thermal, visible, t: mx(thermal, visible)  # rule baseline (and the detector's training domain)
    if backbone is not None:
        fuse = make_fuser("vfn", backbone)
        inputs["generic fused"] = lambda thermal, visible, t: fuse(thermal, visible)
    return inputs
