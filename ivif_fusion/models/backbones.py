"""The fusion backbone architectures by name, and their cost.

A backbone config dict names its architecture in ``arch`` (``vfn`` when absent: configs
stored before there was a choice). :func:`backbone_from_config` rebuilds any of them, which is
how checkpoints, VIFA students and the pipeline load a backbone without a flag.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .vfn import VFN, VFNConfig
from .vfn2 import VFN2, VFN2Config

ARCHS = {"vfn": (VFN, VFNConfig), "vfn2": (VFN2, VFN2Config)}
DEFAULT_ARCH = "vfn"


class UnknownArchitecture(UserError, ValueError):
    """A backbone architecture name (or one of its config keys) that does not exist."""


def _classes(arch: str) -> tuple:
    if arch not in ARCHS:
        raise UnknownArchitecture(f"unknown backbone architecture {arch!r}; available: {sorted(ARCHS)}")
    return ARCHS[arch]


def build_backbone(arch: str = DEFAULT_ARCH, **params: object) -> nn.Module:
    """A freshly initialised backbone of ``arch`` with its config's defaults overridden by ``params``."""
    model_cls, cfg_cls = _classes(arch)
    unknown = set(params) - set(cfg_cls.__dataclass_fields__)
    if unknown:
        raise UnknownArchitecture(f"{arch} has no config key(s) {sorted(unknown)}; "
                                  f"valid: {sorted(cfg_cls.__dataclass_fields__)}")
    return model_cls(cfg_cls(**params))


def backbone_from_config(config: dict) -> nn.Module:
    """Rebuild a backbone from its stored config dict (``arch`` selects the class)."""
    arch = config.get("arch", DEFAULT_ARCH)
    model_cls, cfg_cls = _classes(arch)
    return model_cls(cfg_cls.from_dict({k: v for k, v in config.items() if k != "arch"}))


def arch_of(backbone: nn.Module) -> str:
    """Name of a backbone's architecture."""
    for name, (model_cls, _) in ARCHS.items():
        if type(backbone) is model_cls:
            return name
    raise UnknownArchitecture(f"{type(backbone).__name__} is not a registered backbone")


def conv_macs(module: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of every Conv2d in one ``module(ir, y)`` pass at ``height`` x ``width``.

    Counted by forward hooks (output elements x input channels per group x kernel area), so it
    includes fixed convs such as Sobel only when they are modules; element-wise work is not counted.
    """
    total = 0

    def hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 1, height, width), torch.zeros(1, 1, height, width))
    finally:
        for h in handles:
            h.remove()
    return total
