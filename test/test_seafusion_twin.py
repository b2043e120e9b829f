"""The SeAFusion-architecture twin: parameter count, cost, behaviour and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ivif_fusion.models.seafusion_twin import MAC_PER_PIXEL, GradientDenseBlock, SeAFusionTwin, paper_parameter_count


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_parameter_count_pinned_and_by_hand() -> None:
    block = {c: _conv(c, c, 3) + _conv(2 * c, c, 3) + _conv(3 * c, o, 1) + _conv(c, o, 1) for c, o in ((16, 32), (32, 48))}
    assert block == {16: 9056, 32: 33952}
    encoder = _conv(1, 16, 3) + block[16] + block[32]
    decoder = _conv(96, 64, 3) + _conv(64, 32, 3) + _conv(32, 16, 3) + _conv(16, 1, 3)
    twin = SeAFusionTwin()
    assert sum(p.numel() for p in twin.parameters()) == 2 * encoder + decoder == 164_929
    # the paper's implementation also stores its depthwise Sobel kernels: 2 x 9 x (16 + 32) per modality
    assert paper_parameter_count(twin) == 164_929 + 2 * 2 * 9 * (16 + 32) == 166_657


def test_cost_is_102_gflop_at_640x480() -> None:
    """Conv multiply-accumulates per pixel, counted by hooks on a small input, plus the Sobel convs."""
    twin = SeAFusionTwin().eval()
    macs = []

    def hook(m: torch.nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        macs.append(out.shape[1] * out.shape[2] * out.shape[3] * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    for m in twin.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    h, w = 12, 20
    with torch.inference_mode():
        twin(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    per_pixel = sum(macs) / (h * w) + 2 * 2 * 9 * (16 + 32)
    assert per_pixel == MAC_PER_PIXEL == 166_000
    assert per_pixel * 640 * 480 * 2 / 1e9 == pytest.approx(102.0, abs=0.05)


def test_output_shape_range_and_gradient_branch() -> None:
    torch.manual_seed(0)
    twin = SeAFusionTwin().eval()
    with torch.inference_mode():
        out = twin(torch.rand(2, 1, 30, 41), torch.rand(2, 1, 30, 41))
    assert out.shape == (2, 1, 30, 41) and 0 <= out.min() and out.max() <= 1
    # on a flat input the Sobel branch sees no gradient: only its 1x1 conv's bias is left of it
    block = GradientDenseBlock(4, 6).eval()
    x = torch.full((1, 4, 9, 9), 0.7)
    with torch.inference_mode():
        got = block(x)
        d1 = torch.nn.functional.leaky_relu(block.dense1(x), 0.2)
        d2 = torch.nn.functional.leaky_relu(block.dense2(torch.cat([x, d1], 1)), 0.2)
        dense = block.dense_out(torch.cat([x, d1, d2], 1))
        want = torch.nn.functional.leaky_relu(dense + block.gradient_out.bias.view(1, -1, 1, 1), 0.1)
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="1 channel"):
        twin(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))


def test_onnx_parity(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ivif_fusion.runtime.onnx_export import export_reference_onnx, parity_check

    torch.manual_seed(1)
    twin = SeAFusionTwin().eval()
    path = export_reference_onnx(twin, tmp_path / "seafusion_twin.onnx")
    parity = parity_check(twin, path, [(1, 40, 56), (2, 33, 27)])
    assert set(parity) == {"1x40x56", "2x33x27"}
    assert max(parity.values()) <= 1e-4, parity
