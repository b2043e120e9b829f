"""Small differentiable image ops shared by the models, the losses and the metrics (torch, N, C, H, W).

:func:`sobel_xy` is the project's one Sobel operator. The model's attention and the fusion loss
use its default (replicate padding); the fusion metrics pick the border rule their reference
implementation uses (``padding=``) and run it on float64 tensors, where integer images give exact
integer responses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Horizontal Sobel kernel, correlated (not convolved): the response is right minus left.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])

#: Border rules of :func:`sobel_xy`: torch padding mode per name; "valid" keeps the interior only.
SOBEL_PADDINGS: dict[str, str | None] = {
    "replicate": "replicate",  # edge pixel repeated (the model's and the loss's rule)
    "zeros": "constant",  # zero outside, as a 'same'-mode convolution (Qabf of the CDDFuse evaluator, VIFB)
    "reflect": "reflect",  # mirrored without repeating the edge pixel (Kumar's per_extn_im_fn, used by Nabf)
    "valid": None,  # no padding: output is (H-2, W-2)
}


def check_shape(x: torch.Tensor, ndim: int, name: str, channels: int | None = None) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channel(s), got shape {tuple(x.shape)}")


def sobel_xy(x: torch.Tensor, padding: str = "replicate") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel Sobel derivatives ``(gx, gy)``: gx is right minus left, gy is down minus up.

    ``(N, C, H, W) -> two (N, C, H, W)`` (``(N, C, H-2, W-2)`` with ``padding="valid"``); the
    padding names are the keys of :data:`SOBEL_PADDINGS`. Channels are folded into the batch so
    one constant 1x1x3x3 kernel serves any channel count: the op traces to ONNX as is.
    """
    check_shape(x, 4, "sobel_xy")
    if padding not in SOBEL_PADDINGS:
        raise ValueError(f"sobel_xy: unknown padding '{padding}'; choose from {sorted(SOBEL_PADDINGS)}")
    kx = _SOBEL_X.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    ky = kx.transpose(2, 3)
    flat = x.reshape(-1, 1, x.shape[2], x.shape[3])
    mode = SOBEL_PADDINGS[padding]
    if mode is not None:
        flat = F.pad(flat, (1, 1, 1, 1), mode=mode)
    gx, gy = F.conv2d(flat, kx), F.conv2d(flat, ky)
    shape = (x.shape[0], x.shape[1], gx.shape[2], gx.shape[3])
    return gx.reshape(shape), gy.reshape(shape)


def sobel_l1(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| per channel: the gradient magnitude used by the fusion loss and attention.

    The L1 form avoids the sqrt whose gradient is undefined at flat regions.
    """
    gx, gy = sobel_xy(x)
    return gx.abs() + gy.abs()
