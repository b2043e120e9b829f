"""Small differentiable image ops shared by the models and the losses (torch, N, C, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def check_shape(x: torch.Tensor, ndim: int, name: str, channels: int | None = None) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channel(s), got shape {tuple(x.shape)}")


def sobel_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel Sobel derivatives with replicate padding. (N, C, H, W) -> two (N, C, H, W)."""
    check_shape(x, 4, "sobel_xy")
    # int(): a traced graph (ONNX export) records the channel count as a constant, so the depthwise
    # kernel below has a known shape, which the exporter's Conv requires.
    c = int(x.shape[1])
    kx = _SOBEL_X.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    ky = kx.transpose(2, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx, groups=c), F.conv2d(xp, ky, groups=c)


def sobel_l1(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| per channel: the gradient magnitude used by the fusion loss and attention.

    The L1 form avoids the sqrt whose gradient is undefined at flat regions.
    """
    gx, gy = sobel_xy(x)
    return gx.abs() + gy.abs()
