import numpy as np
import pytest
import torch

from ivif_fusion.colour import (luminance, recombine, rgb_to_ycbcr, rgb_to_ycbcr_t, ycbcr_to_rgb, ycbcr_to_rgb_t)


def test_known_values_bt601_full_range():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    ycc = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycc[0, :, 0], [0.299, 0.587, 0.114, 1.0], atol=1e-6)
    # Pure blue has Cb at its maximum 1.0; pure red has Cr at 1.0 (full range, offset 0.5).
    assert ycc[0, 2, 1] == pytest.approx(1.0, abs=1e-6)
    assert ycc[0, 0, 2] == pytest.approx(1.0, abs=1e-6)
    assert ycc[0, 3, 1] == pytest.approx(0.5, abs=1e-6) and ycc[0, 3, 2] == pytest.approx(0.5, abs=1e-6)


def test_round_trip_exact_float_and_uint8():
    rng = np.random.default_rng(0)
    rgb = rng.random((17, 23, 3))
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb), clip=False)
    np.testing.assert_allclose(back, rgb, atol=2e-6)
    u8 = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    back8 = np.rint(ycbcr_to_rgb(rgb_to_ycbcr(u8 / 255.0)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(back8, u8)


def test_torch_matches_numpy_and_round_trips():
    rng = np.random.default_rng(1)
    rgb = rng.random((5, 7, 3)).astype(np.float32)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    ycc_t = rgb_to_ycbcr_t(t)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ycc_t, rgb_to_ycbcr(rgb), atol=1e-6)
    np.testing.assert_allclose(ycbcr_to_rgb_t(rgb_to_ycbcr_t(t), clip=False).numpy(), t.numpy(), atol=1e-5)


def test_recombine_keeps_colour_and_sets_luminance():
    vi = np.zeros((4, 4, 3), np.float32)
    vi[..., 0] = 0.8  # reddish
    vi[..., 2] = 0.2
    fy = np.full((4, 4), 0.3, np.float32)
    out = recombine(fy, vi)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(luminance(out), fy, atol=1e-5)
    np.testing.assert_allclose(rgb_to_ycbcr(out)[..., 1:], rgb_to_ycbcr(vi)[..., 1:], atol=1e-5)
    assert out[0, 0, 0] > out[0, 0, 1]  # still red-dominant: colour, not gray


def test_recombine_gray_visible_and_bad_shapes():
    out = recombine(np.full((3, 3), 0.5, np.float32), np.full((3, 3), 0.1, np.float32))
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    with pytest.raises(ValueError):
        recombine(np.zeros((3, 3)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError):
        rgb_to_ycbcr(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError):
        rgb_to_ycbcr_t(torch.zeros(1, 1, 3, 3))
