"""Fusion metrics: hand-computed values on tiny images, stored values of the public evaluator's
conventions on real pairs, identities, ordering sanity, input checks, and the CLI."""

from __future__ import annotations

import csv
import math
import re
import time

import cv2
import numpy as np
import pytest

from ivif_fusion.metrics import qabf as qm
from ivif_fusion.metrics import vif as vifm
from ivif_fusion.metrics import fusion as fm
from ivif_fusion.metrics.fusion import (HIGHER_IS_BETTER, METRIC_NAMES, average_gradient, cc, correlation, entropy,
                                        fusion_metrics, mutual_information, mutual_information_pair, psnr, qabf_nabf,
                                        scd, spatial_frequency, ssim, ssim_pair, std_dev, to_gray255, vif_pair)

TG, KG, DG, TA, KA, DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8


def _scene(h: int = 96, w: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A real-like pair: IR with warm blobs on a cool background, visible with texture and a ramp (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ir = np.full((h, w), 40.0)
    ir[(yy - 30) ** 2 + (xx - 35) ** 2 < 15 ** 2] = 220.0
    ir[55:85, 80:100] = 190.0
    ir += rng.normal(0, 2, (h, w))
    vi = 60.0 + 0.8 * xx + 40.0 * ((xx // 8 + yy // 8) % 2)
    vi[10:20, :] = 230.0
    vi += rng.normal(0, 2, (h, w))
    return np.clip(np.rint(ir), 0, 255).astype(np.uint8), np.clip(np.rint(vi), 0, 255).astype(np.uint8)


def _dot() -> np.ndarray:
    """3x3 zeros with a 1 in the centre: its Sobel responses are worked out by hand below."""
    a = np.zeros((3, 3))
    a[1, 1] = 1.0
    return a


# ---------------------------------------------------------------- single-image metrics by hand


def test_constant_image_has_zero_information_metrics():
    f = np.full((50, 60), 77.0)
    assert entropy(f) == 0.0 and math.copysign(1.0, entropy(f)) == 1.0  # +0.0, not -0.0
    assert std_dev(f) == 0.0
    assert spatial_frequency(f) == 0.0
    for variant in fm.AG_VARIANTS:
        assert average_gradient(f, variant) == 0.0


def test_entropy_two_levels_is_one_bit_and_256_levels_is_eight():
    f = np.zeros((4, 6))
    f[:2] = 255.0
    assert entropy(f) == 1.0
    assert entropy(np.arange(256, dtype=np.float64).reshape(16, 16)) == pytest.approx(8.0, abs=1e-12)
    # unequal two-level histogram: 1/4, 3/4
    g = np.zeros((2, 2))
    g[0, 0] = 10
    assert entropy(g) == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)), abs=1e-12)


def test_sd_is_population_std():
    f = np.array([[0.0, 2.0], [4.0, 6.0]])
    assert std_dev(f) == pytest.approx(math.sqrt(5.0), abs=1e-12)  # mean 3, deviations 9,1,1,9 -> 20/4


def test_sf_and_ag_by_hand():
    f = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    # horizontal differences 1, 2, 0, 0 -> RF^2 = 5/4; vertical 2, 1, -1 -> CF^2 = 6/3 = 2
    assert spatial_frequency(f) == pytest.approx(math.sqrt(5 / 4 + 2), abs=1e-12)
    # forward differences over the 1x2 region: (dx, dy) = (1, 2) and (2, 1) -> sqrt(5/2) both
    assert average_gradient(f, "forward") == pytest.approx(math.sqrt(2.5), abs=1e-12)
    # the evaluator's scheme: dx row 0 = 1 - 0, (3 - 0)/2, 3 - 1 = (1, 1.5, 2); row 1 = (0, 0, 0);
    # dy (two rows: one-sided) = 2 - 0, 2 - 1, 2 - 3 = (2, 1, -1) on both rows
    terms = [math.sqrt((1 + 4) / 2), math.sqrt((2.25 + 1) / 2), math.sqrt((4 + 1) / 2),
             math.sqrt(4 / 2), math.sqrt(1 / 2), math.sqrt(1 / 2)]
    assert average_gradient(f) == pytest.approx(sum(terms) / 6, abs=1e-12)  # mean over H x W
    assert average_gradient(f, "vifb") == pytest.approx(sum(terms) / 2, abs=1e-12)  # over (H-1)(W-1)
    with pytest.raises(ValueError, match="AG variant"):
        average_gradient(f, "sobel")
    # uint8 input: differences must not wrap around (0 - 1 = 255 in uint8)
    f8 = (20 * f).astype(np.uint8)
    assert spatial_frequency(f8) == spatial_frequency(20 * f)
    for variant in fm.AG_VARIANTS:
        assert average_gradient(f8, variant) == average_gradient(20 * f, variant)
    # forward differences on a 3x3: region (0..1) x (0..1): (dx, dy) = (1, 2), (2, 1), (0, 3), (0, -2)
    g = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 1.0]])
    assert average_gradient(g, "forward") == pytest.approx(
        (2 * math.sqrt(2.5) + math.sqrt(4.5) + math.sqrt(2.0)) / 4, abs=1e-15)
    # the smallest accepted sizes, in both orientations; one row or column is refused
    col = np.array([[0.0, 4.0], [0.0, 4.0], [0.0, 4.0]])  # 3x2: dx = 4 everywhere, dy = 0
    assert spatial_frequency(col) == 4.0 and spatial_frequency(col.T) == 4.0
    assert average_gradient(col) == pytest.approx(4 / math.sqrt(2), abs=1e-15)
    assert average_gradient(col.T) == pytest.approx(4 / math.sqrt(2), abs=1e-15)
    for shape in ((1, 5), (5, 1)):
        for metric, name in ((average_gradient, "AG"), (spatial_frequency, "SF")):
            with pytest.raises(ValueError, match="^" + re.escape(f"{name} needs at least 2x2 pixels, got {shape}") + "$"):
                metric(np.zeros(shape))


# ---------------------------------------------------------------- two-image metrics by hand


def test_mi_by_hand_and_identities():
    x = np.array([[0.0, 0.0], [7.0, 7.0]])
    assert mutual_information_pair(x, x) == pytest.approx(math.log(2), abs=1e-15)  # one bit, in nats
    assert mutual_information_pair(x, x.T) == 0.0  # independent halves
    # 3 levels against 2: p = [[1/4, 0], [1/4, 1/4], [0, 1/4]] -> MI = H(Y) - H(Y|X) = ln 2 - (1/2) ln 2
    x3 = np.array([0.0, 1.0, 1.0, 2.0])
    y2 = np.array([0.0, 0.0, 1.0, 1.0])
    assert mutual_information_pair(x3, y2) == pytest.approx(0.5 * math.log(2), abs=1e-15)
    assert mutual_information(x, x.T, x) == pytest.approx(math.log(2), abs=1e-15)  # MI(A,F) + MI(B,F)
    _, vi = _scene()
    v = vi.astype(np.float64)
    assert mutual_information_pair(v, v) == pytest.approx(entropy(v) * math.log(2), abs=1e-10)
    assert mutual_information_pair(v, np.full_like(v, 9.0)) == 0.0


def test_correlation_cc_and_scd_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = 5.0 - a
    f = np.array([[1.0, 2.0], [3.0, 5.0]])
    # deviations of a: -1.5 -0.5 0.5 1.5 (sum sq 5); of f (mean 2.75): -1.75 -0.75 0.25 2.25 (sum sq 8.75);
    # sum of products 2.625 + 0.375 + 0.125 + 3.375 = 6.5
    r = 6.5 / math.sqrt(5 * 8.75)
    assert correlation(a, f) == pytest.approx(r, abs=1e-15)
    assert correlation(a * 1e-3, f * 1e-3) == pytest.approx(r, abs=1e-12)  # scale-free, even below 1
    assert correlation(b, f) == pytest.approx(-r, abs=1e-15)
    assert cc(a, b, a + f) == pytest.approx((correlation(a, a + f) + correlation(b, a + f)) / 2, abs=1e-15)
    assert cc(a, a, f) == pytest.approx(r, abs=1e-15)
    # F = 2A with B = 5 - A: F - B = 3A - 5 (corr with A: 1) and F - A = A (corr with B: -1)
    assert scd(a, b, 2 * a) == pytest.approx(0.0, abs=1e-15)
    ir, vi = _scene()
    ia, ib = ir.astype(np.float64), vi.astype(np.float64)
    assert scd(ia, ib, ia + ib) == pytest.approx(2.0, abs=1e-12)  # corr(A, A) + corr(B, B)
    # a constant image has no correlation: 0 / 0, NaN as in the evaluator
    assert math.isnan(correlation(a, np.full_like(a, 3.0)))
    assert math.isnan(scd(a, b, b))  # F = B: F - B is constant
    # uint8 inputs: F - A must not wrap around
    a8, b8, f8 = a.astype(np.uint8), b.astype(np.uint8), f.astype(np.uint8)
    assert scd(a8, b8, f8) == pytest.approx(scd(a, b, f), abs=1e-15)
    assert psnr(a8, b8, f8) == pytest.approx(psnr(a, b, f), abs=1e-12)


def test_psnr_by_hand_uses_the_fused_peak():
    z = np.zeros((3, 3))
    f = z.copy()
    f[0, 0] = 20.0
    # MSE(A, F) = MSE(B, F) = 400 / 9; peak = max F = 20
    assert psnr(z, z, f) == pytest.approx(10 * math.log10(400 / (400 / 9)), abs=1e-12)
    assert psnr(z, z, f, "255") == pytest.approx(10 * math.log10(255 ** 2 / (400 / 9)), abs=1e-12)
    assert psnr(z.astype(np.uint8), z.astype(np.uint8), f.astype(np.uint8)) == psnr(z, z, f)  # no uint8 wrap
    assert psnr(z, z, z) == math.inf
    assert psnr(z + 5, z + 5, z) == -math.inf  # F black but not equal to the sources: peak 0
    with pytest.raises(ValueError, match="PSNR peak"):
        psnr(z, z, f, "1")
    ir, vi = _scene()
    a, b = ir.astype(np.float64), vi.astype(np.float64)
    # per pixel (max - A)^2 + (max - B)^2 = (A - B)^2: F = max(A, B) has the MSE of F = A and of F = B
    assert psnr(a, b, np.maximum(a, b), "255") == pytest.approx(psnr(a, b, a, "255"), abs=1e-12)
    assert psnr(a, b, b, "255") == pytest.approx(psnr(a, b, a, "255"), abs=1e-12)


def test_ssim_conventions_match_skimage_calls():
    from skimage.metrics import structural_similarity

    ir, vi = _scene()
    a, b = ir.astype(np.float64), vi.astype(np.float64)
    assert ssim_pair(a, a) == pytest.approx(1.0, abs=1e-12)
    # the evaluator: ssim(F, X) of float32 images under scikit-image 0.19 -> 7x7 uniform window,
    # sample covariance, data_range 2 (float dtype range -1..1)
    ref = structural_similarity(a.astype(np.float32), b.astype(np.float32), win_size=7, data_range=2.0)
    assert ssim_pair(a, b) == pytest.approx(ref, rel=1e-9)
    wang = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim_pair(a, b, "wang") == pytest.approx(wang, abs=1e-10)
    assert ssim(a, b, a) == pytest.approx(1.0 + ssim_pair(a, b), abs=1e-12)  # sum over the two sources
    assert ssim(a, b, b, "wang") == pytest.approx(wang + 1.0, abs=1e-10)
    assert ssim(a, b, a, "wang") == pytest.approx(1.0 + wang, abs=1e-10)
    with pytest.raises(ValueError, match="SSIM variant"):
        ssim_pair(a, b, "ms")


def test_ssim_by_hand_on_one_window():
    # 7x7 images: one window, the single map value is the mean. x = 0..48, y = 2 x: means 24 / 48,
    # sample variances (n = 49): var(x) = 49*48*... computed from the sums below; C1 = 4e-4, C2 = 3.6e-3
    x = np.arange(49, dtype=np.float64).reshape(7, 7)
    y = 2 * x
    mx, my = 24.0, 48.0
    vx = float(np.sum((x - mx) ** 2)) / 48  # sample variance: 49 * 200 / 48
    assert vx == pytest.approx(49 * 200 / 48, abs=1e-12)
    vy, vxy = 4 * vx, 2 * vx
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    expected = (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    assert expected == pytest.approx(0.64, abs=1e-6)  # (2304 / 2880) * (4 / 5)
    assert ssim_pair(x, y) == pytest.approx(expected, rel=1e-6)  # float32 moments, as the evaluator


def test_vif_identities():
    ir, _ = _scene()
    a = ir.astype(np.float64)
    assert vif_pair(a, a) == pytest.approx(1.0, abs=1e-6)
    assert vif_pair(a, a + 17.0) == pytest.approx(1.0, abs=1e-6)  # an offset changes no local statistic
    assert vif_pair(np.full_like(a, 5.0), a) == 1.0  # flat reference: 0 / 0, reported as 1 as in the evaluator
    assert vif_pair(a, np.full_like(a, 5.0)) == 0.0  # flat distorted image: no information (g = 0)
    assert fm.vif(a, a, a) == pytest.approx(2.0, abs=1e-6)  # VIFp(A->F) + VIFp(B->F)
    # a faint but not flat reference (denominator well below 1) is still a ratio: flat F gives 0
    assert vif_pair(a * 1e-6, np.full_like(a, 5.0)) == 0.0
    # uint8 inputs are squared in float (a uint8 square would wrap)
    half = (a // 2).astype(np.uint8)
    assert vif_pair(ir, half) == pytest.approx(vif_pair(a, a // 2), rel=1e-12)


def test_separable_filter_equals_2d_valid_correlation():
    # VIF rests on this: OpenCV filtering cropped to the window-inside region
    from scipy.signal import correlate2d

    x = np.random.default_rng(3).random((23, 30)) * 255
    for size, sigma in ((17, 3.4), (11, 1.5), (3, 0.6)):
        k = vifm.gaussian_window_1d(size, sigma)
        assert k.sum() == pytest.approx(1.0)
        ref = correlate2d(x, np.outer(k, k), mode="valid")
        got = vifm.filter_valid(x, k)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert vifm.gaussian_window_1d(3, 0.6).tolist() == pytest.approx(
        [math.exp(-1 / 0.72) / (1 + 2 * math.exp(-1 / 0.72)), 1 / (1 + 2 * math.exp(-1 / 0.72)),
         math.exp(-1 / 0.72) / (1 + 2 * math.exp(-1 / 0.72))], abs=1e-15)
    with pytest.raises(ValueError, match="smaller than"):
        vifm.filter_valid(x[:5], vifm.gaussian_window_1d(9, 1.8))


# ---------------------------------------------------------------- Qabf and Nabf by hand


def test_qabf_gradients_of_a_dot_by_hand():
    # zero-padded 'same' Sobel of a centred 1: the pixel above sees it with weight 2 below it
    # (s_y = 2, s_x = 0 -> angle pi/2 by rule); the pixel left of it: s_x = -(right - left) = -2,
    # s_y = 0 -> atan(0 / -2) = 0; the top-left corner: s_x = -1, s_y = 1 -> -pi/4; top-right: +pi/4
    g, alpha = qm.qabf_gradients(_dot(), "cddfuse")
    r2 = math.sqrt(2)
    np.testing.assert_allclose(g, [[r2, 2, r2], [2, 0, 2], [r2, 2, r2]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(alpha, [[-math.pi / 4, math.pi / 2, math.pi / 4], [0, math.pi / 2, 0],
                                       [math.pi / 4, math.pi / 2, -math.pi / 4]], rtol=0, atol=1e-15)


def test_qabf_by_hand_on_a_dot():
    a, flat = _dot(), np.zeros((3, 3))
    qa1 = TA / (1 + math.exp(KA * (1 - DA)))  # orientation kept exactly

    def qg(x: float) -> float:
        return TG / (1 + math.exp(KG * (x - DG)))

    # F = 2A: every edge keeps half its strength (G = 1/2) and its orientation, B has no edges (w_B = 0)
    assert qm.qabf(a, flat, 2 * a) == pytest.approx(qg(0.5) * qa1, abs=1e-15)
    assert qg(0.5) * qa1 == pytest.approx(0.9994 / 2 * 0.9879 / (1 + math.exp(-4.4)), abs=1e-15)
    # F = A: where g_A = g_F the evaluators take G = g_F itself (not 1), so the weights g = 2 (x4)
    # and sqrt 2 (x4) see different strength terms
    r2 = math.sqrt(2)
    expected = (4 * 2 * qg(2) + 4 * r2 * qg(r2)) * qa1 / (4 * 2 + 4 * r2)
    assert qm.qabf(a, flat, a) == pytest.approx(expected, abs=1e-15)
    # A's edges through B: symmetric in the two sources
    assert qm.qabf(flat, a, a) == pytest.approx(expected, abs=1e-15)
    # the measure is scale-free away from ties: tiny gradients (total weight below 1) give the same
    assert qm.qabf(a / 100, flat, a / 50) == pytest.approx(qg(0.5) * qa1, abs=1e-15)
    # uint8 images are filtered in float (a uint8 Sobel would wrap)
    a8 = (9 * a).astype(np.uint8)
    assert qm.qabf(a8, flat.astype(np.uint8), 2 * a8) == pytest.approx(qg(0.5) * qa1, abs=1e-15)
    # nothing to preserve: both sources flat -> undefined
    assert math.isnan(qm.qabf(flat, flat, a))
    with pytest.raises(ValueError, match="Qabf convention"):
        qm.qabf(a, flat, a, convention="x")
    with pytest.raises(ValueError, match="3x3"):
        qm.qabf(a[:2], flat[:2], a[:2])


def test_qabf_of_f_equal_a_with_flat_b_is_the_sigmoid_product_in_the_mod_pi_variant():
    # interior gradients, G = min/max = 1 and orientation distance 0 on every edge of A
    ir, _ = _scene()
    a = ir.astype(np.float64)
    b = np.full_like(a, 100.0)
    expected = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert expected == pytest.approx(0.9747936, abs=1e-7)  # 0.998847 * 0.975918
    assert qm.qabf(a, b, a, convention="mod_pi") == pytest.approx(expected, abs=1e-12)
    q, n = qabf_nabf(a, np.zeros_like(a), a)
    assert expected < q < TG * TA / (1 + math.exp(KA * (1 - DA)))  # G = g_F >= 1 lifts the strength term towards Tg
    assert n == 0.0  # F's edges are never stronger than A's
    # zero padding: a flat but non-zero B has strong border edges that F = A does not preserve
    assert qm.qabf(a, b, a) < 0.8
    z = np.zeros_like(a)
    q2, n2 = qabf_nabf(z, z, a)
    assert math.isnan(q2) and n2 > 0.0  # no edge to preserve; A's edges in F are all artefacts


def test_mod_pi_variant_compares_orientations_modulo_pi():
    # two ramps with gradients (-10, 1) and (10, 1): orientations atan2 = pi - t and t, t = atan(1/10);
    # modulo pi they are 2t apart (not pi - 2t), with equal strength (G = 1)
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float64)
    a, f = 100 - 10 * xx + yy, 10 * xx + yy
    t = math.atan(0.1)
    lam = 1 - 2 * t / (math.pi / 2)
    expected = TG / (1 + math.exp(KG * (1 - DG))) * TA / (1 + math.exp(KA * (lam - DA)))
    assert qm.qabf(a, np.zeros_like(a), f, convention="mod_pi") == pytest.approx(expected, abs=1e-12)
    # both sources go through the same convention: swapping them changes nothing
    ir, vi = _scene()
    x, y = ir.astype(np.float64), vi.astype(np.float64)
    fused = np.maximum(x, y)
    for conv in qm.QABF_CONVENTIONS:
        assert qm.qabf(x, y, fused, convention=conv) == pytest.approx(qm.qabf(y, x, fused, convention=conv),
                                                                      abs=1e-12)


def test_negated_gradients_keep_qabf():
    # s_x and s_y both change sign: atan(s_y / s_x) and the strengths are unchanged in both conventions
    ir, _ = _scene()
    a = ir.astype(np.float64)
    b = np.zeros_like(a)
    for conv in qm.QABF_CONVENTIONS:
        assert qm.qabf(a, b, -a, convention=conv) == pytest.approx(qm.qabf(a, b, a, convention=conv), abs=1e-12)
    # a contrast-inverted image also flips the zero-padded border step, so only the interior variant keeps it
    assert qm.qabf(a, b, 255.0 - a, convention="mod_pi") == pytest.approx(qm.qabf(a, b, a, convention="mod_pi"),
                                                                            abs=1e-12)
    assert qm.qabf(a, b, 255.0 - a) < qm.qabf(a, b, a) - 0.05


def test_nabf_by_hand_on_a_vertical_step():
    # 4x6 step (0 | 9): mirrored borders make gy = 0 everywhere and gx = 36 on columns 2 and 3 only.
    a = np.zeros((4, 6))
    a[:, 3:] = 9.0
    flat = np.zeros_like(a)
    f = 2 * a  # doubles every edge: artefacts on the 8 edge pixels (g_F > g_A > g_B = 0)
    # Q^AF: strength ratio 1/2, same angle (relative orientation 1); Q^BF: ratio 0 (g_B = 0) and angle
    # atan(gv / 0) = pi/2 against 0 on B (relative orientation 0)
    q_af = math.sqrt(0.9999 / (1 + math.exp(-19 * 0.0)) * 0.9995 / (1 + math.exp(-22 * 0.5)))
    q_bf = math.sqrt(0.9999 / (1 + math.exp(19 * 0.5)) * 0.9995 / (1 + math.exp(22 * 0.5)))
    # default (images / 255, as Image-Fusion passes im2double): every strength < Td = 2 -> weights 0.001
    assert qm.nabf(a, flat, f) == pytest.approx(8 * (2 - q_af - q_bf) / 48, abs=1e-15)
    # 0..255 scale: g_A = 36 / 8 = 4.5 >= Td on the edges -> w_A = 4.5^1.5 there, 0.001 elsewhere
    w = 4.5 ** 1.5
    expected = 8 * ((1 - q_af) * w + (1 - q_bf) * 0.001) / (8 * w + 16 * 0.001 + 24 * 0.001)
    assert qm.nabf(a, flat, f, scale="255") == pytest.approx(expected, abs=1e-15)
    assert qm.nabf(a, flat, a) == 0.0  # nothing stronger than the sources
    # a step of 4 on 0..255: g = 16 / 8 = 2, exactly the threshold Td (counts as an edge, w = 2^1.5)
    s4 = a * 4 / 9
    w2 = 2.0 ** 1.5
    both = 16 * (1 - q_af) * w2 / (2 * (8 * w2 + 16 * 0.001))  # A = B: both sources weigh alike
    assert qm.nabf(s4, s4, 2 * s4, scale="255") == pytest.approx(both, abs=1e-15)
    with pytest.raises(ValueError, match="Nabf scale"):
        qm.nabf(a, flat, f, scale="1")


def test_ordering_edge_preserving_fusion_beats_blurred_fusion():
    ir, vi = _scene()
    good = np.maximum(ir, vi)
    blurred = cv2.GaussianBlur(good, (0, 0), 2.5)
    m_good, m_blur = fusion_metrics(ir, vi, good), fusion_metrics(ir, vi, blurred)
    for name in ("Qabf", "VIF", "SSIM", "SF", "AG"):
        assert m_good[name] > m_blur[name], name
    # adding noise creates edges stronger than both sources: more artefacts
    noisy = np.clip(good.astype(np.float64) + np.random.default_rng(1).normal(0, 25, good.shape), 0, 255)
    assert fusion_metrics(ir, vi, noisy.astype(np.uint8))["Nabf"] > m_good["Nabf"] + 0.05


# ---------------------------------------------------------------- real pairs: the public evaluator's values

# Computed by an independent script (kept outside the repository) that re-implements the CDDFuse
# evaluator (utils/Evaluator.py of Zhaozixiang1228/MMIF-CDDFuse) line by line on float32 images read
# as it reads them (cv2.imread -> float32 -> BGR2GRAY -> round), with scipy.signal.convolve2d for
# Qabf/VIF, scikit-image's SSIM at data_range 2 on float32, and Nabf as Image-Fusion's
# analysis_nabf.m on images / 255 (ties of g_F and g_X kept exact). Fused images: max(A, B) and
# floor((A + B) / 2) of the gray sources. The tolerance covers the reference's float32 arithmetic.
REFERENCE = {
    ("MSRS/00004N.png", "max"): {
        "EN": 6.21724764, "SD": 30.342617, "SF": 6.54757786, "AG": 1.79241598, "MI": 4.14706501, "SCD": 1.74942219,
        "VIF": 1.01538655, "Qabf": 0.659392953, "SSIM": 0.968582468, "CC": 0.683028162, "PSNR": 19.9510727, "Nabf": 0.000492812871,
    },
    ("MSRS/00004N.png", "mean"): {
        "EN": 5.53276165, "SD": 17.295826, "SF": 3.61156845, "AG": 1.12038493, "MI": 1.71700015, "SCD": 1.15220523,
        "VIF": 0.620226723, "Qabf": 0.333250999, "SSIM": 0.978033806, "CC": 0.72007072, "PSNR": 21.5179939, "Nabf": 0.000937906272,
    },
    ("MSRS/00107D.png", "max"): {
        "EN": 7.01218785, "SD": 49.7263374, "SF": 15.5883064, "AG": 4.87920237, "MI": 4.81387702, "SCD": 1.53257775,
        "VIF": 0.875423326, "Qabf": 0.681535363, "SSIM": 1.02715053, "CC": 0.569333255, "PSNR": 14.484642, "Nabf": 0.00059954987,
    },
    ("MSRS/00107D.png", "mean"): {
        "EN": 6.42766997, "SD": 27.9150162, "SF": 8.57625294, "AG": 2.9384799, "MI": 1.68220303, "SCD": 1.29407585,
        "VIF": 0.576758136, "Qabf": 0.358919948, "SSIM": 0.991014677, "CC": 0.676767647, "PSNR": 16.821907, "Nabf": 0.000305161513,
    },
    ("TNO/01.png", "max"): {
        "EN": 6.56787425, "SD": 45.2267532, "SF": 9.57968807, "AG": 3.42152143, "MI": 4.47893632, "SCD": 1.69880414,
        "VIF": 0.859894599, "Qabf": 0.557137191, "SSIM": 0.964435151, "CC": 0.318847179, "PSNR": 12.8608522, "Nabf": 0.000434570988,
    },
    ("TNO/01.png", "mean"): {
        "EN": 6.43626946, "SD": 23.3148174, "SF": 6.65235615, "AG": 2.59798217, "MI": 1.47150265, "SCD": 1.76601291,
        "VIF": 0.510003358, "Qabf": 0.331531495, "SSIM": 1.02502023, "CC": 0.397141397, "PSNR": 15.5233488, "Nabf": 0.000102230144,
    },
}


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_real_pairs_equal_the_public_evaluator(data_root, key):
    from ivif_fusion.data.paired import read_image

    pair, rule = key
    dataset, name = pair.split("/")
    thermal = read_image(data_root / dataset / "ir" / name)
    visible = read_image(data_root / dataset / "vi" / name)
    a, b = to_gray255(thermal), to_gray255(visible)
    fused = np.maximum(a, b) if rule == "max" else np.floor((a + b) / 2)
    got = fusion_metrics(thermal, visible, fused.astype(np.uint8))
    for k, v in REFERENCE[key].items():
        assert got[k] == pytest.approx(v, rel=1e-5), k


def test_sobel_paddings_by_hand():
    import torch

    from ivif_fusion.ops import SOBEL_PADDINGS, sobel_xy

    x = torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 3, dtype=torch.float64)[None, None]
    gx, gy = sobel_xy(x, padding="zeros")
    # zero outside: the last column sees 9 on its left and 0 on its right (rows 0 and 2 weigh 3, row 1 weighs 4)
    assert gx[0, 0].tolist() == [[0, 27, 27, -27], [0, 36, 36, -36], [0, 27, 27, -27]]
    assert gy[0, 0, 0].tolist() == [0, 9, 27, 27]  # the row below (weights 1 2 1) minus the zero row above
    gx, gy = sobel_xy(x, padding="reflect")  # mirrored: column -1 is column 1, column 4 is column 2
    assert gx[0, 0].tolist() == [[0, 36, 36, 0]] * 3 and gy.abs().max().item() == 0
    gx, _ = sobel_xy(x)  # replicate (the model's default)
    assert gx[0, 0].tolist() == [[0, 36, 36, 0]] * 3
    gx, gy = sobel_xy(x, padding="valid")
    assert gx.shape == (1, 1, 1, 2) and gx[0, 0].tolist() == [[36, 36]]
    two = torch.cat([x, 2 * x], dim=1)  # channels are filtered independently
    assert torch.equal(sobel_xy(two, padding="zeros")[0][:, 1], 2 * sobel_xy(x, padding="zeros")[0][:, 0])
    assert set(SOBEL_PADDINGS) == {"replicate", "zeros", "reflect", "valid"}
    with pytest.raises(ValueError, match="unknown padding"):
        sobel_xy(x, padding="circular")


# ---------------------------------------------------------------- inputs


def test_uint8_float_gray_rgb_inputs_agree():
    ir, vi = _scene()
    vi_rgb = np.stack([vi, vi, vi], axis=-1)
    fused = np.maximum(ir, vi)
    m1 = fusion_metrics(ir, vi, fused)
    m2 = fusion_metrics(ir.astype(np.float32) / 255, vi_rgb.astype(np.float32) / 255, fused[..., None])
    for k in METRIC_NAMES:
        assert m1[k] == pytest.approx(m2[k], rel=1e-12, abs=1e-12), k
    # BT.601 luminance then rounding
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    assert to_gray255(px).tolist() == [[76.0, 150.0, 29.0, 18.0]]  # 76.245, 149.685, 29.07, 18.15
    # alpha is ignored; every path gives float64
    rgba = np.concatenate([px, np.zeros((1, 4, 1), np.uint8)], axis=-1)
    assert to_gray255(rgba).tolist() == [[76.0, 150.0, 29.0, 18.0]]
    for img in (px, rgba, px[..., 0], px[..., :1], px.astype(np.float32) / 255):
        assert to_gray255(img).dtype == np.float64
    assert to_gray255(np.zeros((1, 1), np.uint8)).tolist() == [[0.0]]
    # float tolerance: values within 1e-3 of 0..1 are network noise and round into range
    assert to_gray255(np.array([[-1e-3, 1.001]])).tolist() == [[0.0, 255.0]]
    for bad, shown in ((-0.0011, "[-0.0011, 0.5]"), (1.0011, "[0.5, 1.001]")):
        msg = f"x: float images must be in 0..1, got values in {shown} (pass uint8 for 0..255 data)"
        with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
            to_gray255(np.array([[0.5, bad]]), "x")


def test_bad_inputs_raise_clear_errors():
    ir, vi = _scene()
    # each message names the image and the problem
    with pytest.raises(ValueError, match=r"^image sizes differ: thermal 128x96, visible 127x96, fused 128x96 \(W x H\)$"):
        fusion_metrics(ir, vi[:, :-1], vi)
    with pytest.raises(ValueError, match=r"^images are 32x30; fusion metrics need at least 41 pixels per side"):
        fusion_metrics(ir[:30, :32], vi[:30, :32], vi[:30, :32])
    for i, name in enumerate(("thermal", "visible", "fused")):
        args = [ir, vi, vi]
        args[i] = vi.astype(np.uint16)
        with pytest.raises(ValueError, match="^" + re.escape(f"{name}: unsupported dtype uint16 (use uint8 0..255 or float 0..1)") + "$"):
            fusion_metrics(*args)
    with pytest.raises(ValueError, match=r"^image: empty image, shape \(0, 3\)$"):
        to_gray255(np.zeros((0, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^image: expected \(H, W\) or \(H, W, 1\|3\|4\), got shape \(4, 4, 5\)$"):
        to_gray255(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="sizes differ"):
        fusion_metrics(ir, vi[:, :-1], vi)
    with pytest.raises(ValueError, match="at least 41"):
        fusion_metrics(ir[:30, :30], vi[:30, :30], vi[:30, :30])
    with pytest.raises(ValueError, match="0..1"):
        fusion_metrics(ir.astype(np.float32), vi, vi)  # 0..255 floats: wrong scale
    with pytest.raises(ValueError, match="dtype"):
        fusion_metrics(ir.astype(np.uint16), vi, vi)
    with pytest.raises(ValueError, match="shape"):
        fusion_metrics(ir[None], vi, vi)
    with pytest.raises(ValueError, match="shape"):
        fusion_metrics(ir, np.stack([vi, vi], -1), vi)
    with pytest.raises(ValueError, match="NaN"):
        fusion_metrics(ir, vi, np.full(vi.shape, np.nan))


def test_names_flags_and_speed_on_640x480():
    assert len(METRIC_NAMES) == 12
    assert [k for k, v in HIGHER_IS_BETTER.items() if not v] == ["Nabf"]
    rng = np.random.default_rng(0)
    ir = cv2.GaussianBlur(rng.integers(0, 256, (480, 640), dtype=np.uint8), (0, 0), 2)
    vi = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 1)
    fused = ((ir.astype(np.uint16) + vi[..., 1]) // 2).astype(np.uint8)
    fusion_metrics(ir, vi, fused)  # warm-up (cv2 import)
    # CPU time of this process, not wall time: the 2 cores are shared with other jobs
    t0 = time.process_time()
    m = fusion_metrics(ir, vi, fused)
    dt = time.process_time() - t0
    assert list(m) == list(METRIC_NAMES)
    assert all(math.isfinite(v) for v in m.values())
    assert dt < 2.0, f"fusion_metrics took {dt:.2f} s of CPU on 640x480"


def test_minimum_size_is_what_vif_needs():
    ir, vi = _scene()
    assert fm.MIN_SIDE == 41
    m = fusion_metrics(ir[:41, :41], vi[:41, :41], vi[:41, :41])  # smallest size VIF's 4th scale allows
    assert math.isfinite(m["VIF"])
    with pytest.raises(ValueError, match="at least 41"):
        fusion_metrics(ir[:40, :60], vi[:40, :60], vi[:40, :60])


# ---------------------------------------------------------------- ivif eval fusion


def _write_pairs(root, n=3, size=(48, 64)):
    """A tiny paired folder (ir/ 8-bit gray, vi/ RGB) and a fused folder of max(ir, gray vi) PNGs."""
    (root / "pairs" / "ir").mkdir(parents=True)
    (root / "pairs" / "vi").mkdir(parents=True)
    (root / "fused").mkdir()
    expected = {}
    for i in range(n):
        ir, vi = _scene(*size, seed=i)
        vi_rgb = np.stack([vi, np.roll(vi, 3, axis=1), vi // 2], axis=-1)
        name = f"{i:05d}N.png"
        cv2.imwrite(str(root / "pairs" / "ir" / name), ir)
        cv2.imwrite(str(root / "pairs" / "vi" / name), vi_rgb[..., ::-1])  # cv2 writes BGR
        fused = np.maximum(ir, to_gray255(vi_rgb).astype(np.uint8))
        cv2.imwrite(str(root / "fused" / name), fused)
        expected[name] = fusion_metrics(ir, vi_rgb, fused)
    return root / "pairs", root / "fused", expected


def test_cli_eval_fusion_writes_csv_summary_and_markdown(tmp_path, capsys):
    from ivif_fusion.cli import main

    pairs, fused, expected = _write_pairs(tmp_path)
    out = tmp_path / "res" / "results.csv"
    assert main(["eval", "fusion", "--pairs", str(pairs), "--fused", str(fused), "--out", str(out),
                 "--no-progress"]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == sorted(expected)
    for r in rows:
        for k in METRIC_NAMES:
            assert float(r[k]) == pytest.approx(expected[r["name"]][k], abs=1e-5), (r["name"], k)
    with (tmp_path / "res" / "results_summary.csv").open() as fh:
        summ = {r["metric"]: r for r in csv.DictReader(fh)}
    assert list(summ) == list(METRIC_NAMES)
    for k in METRIC_NAMES:
        assert float(summ[k]["mean"]) == pytest.approx(np.mean([e[k] for e in expected.values()]), abs=1e-5)
        assert summ[k]["n"] == "3"
    assert summ["Nabf"]["higher_is_better"] == "0" and summ["EN"]["higher_is_better"] == "1"
    md = (tmp_path / "res" / "results_summary.md").read_text()
    assert "| Qabf |" in md and "| Nabf |" in md and "lower" in md
    printed = capsys.readouterr().out
    assert "| SSIM |" in printed and str(out) in printed and "results_summary.md" in printed


def test_cli_eval_fusion_missing_fused_image_names_it(tmp_path, capsys):
    from ivif_fusion.cli import main

    pairs, fused, _ = _write_pairs(tmp_path)
    (fused / "00001N.png").unlink()
    assert main(["eval", "fusion", "--pairs", str(pairs), "--fused", str(fused), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR:") and "00001N.png" in err and "Traceback" not in err
    # --only-fused evaluates the two that exist; the default output lands in the fused folder
    assert main(["eval", "fusion", "--pairs", str(pairs), "--fused", str(fused), "--only-fused",
                 "--no-progress"]) == 0
    with (fused / "fusion_metrics.csv").open() as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == ["00000N.png", "00002N.png"]


def test_cli_eval_fusion_wrong_size_fused_image_is_a_user_error(tmp_path, capsys):
    from ivif_fusion.cli import main

    pairs, fused, _ = _write_pairs(tmp_path, n=1)
    cv2.imwrite(str(fused / "00000N.png"), np.zeros((50, 64), np.uint8))
    assert main(["eval", "fusion", "--pairs", str(pairs), "--fused", str(fused), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "00000N.png: fused image is 64x50 but pair '00000N.png' is 64x48" in err


def test_fused_files_are_read_as_the_evaluator_reads_them(tmp_path, capsys):
    from ivif_fusion.data.paired import SizeMismatchError
    from ivif_fusion.metrics.fusion import FusedFolderError, evaluate_folder, find_fused, summarize

    pairs, fused, expected = _write_pairs(tmp_path, n=1)
    name = "00000N.png"
    gray = cv2.imread(str(fused / name), cv2.IMREAD_UNCHANGED)
    # a 16-bit PNG keeps its high byte (cv2.imread): v * 256 + 200 reads back as v
    cv2.imwrite(str(fused / name), gray.astype(np.uint16) * 256 + 200)
    row = evaluate_folder(pairs, fused, progress=False)[0]
    assert capsys.readouterr().err == ""  # no progress bar when asked for none
    assert row["name"] == name
    for k in METRIC_NAMES:
        assert row[k] == pytest.approx(expected[name][k], rel=1e-12, abs=1e-12), k
    # a colour fused PNG (cv2 writes BGR): the metrics see its gray as fusion_metrics does
    thermal, visible = cv2.imread(str(pairs / "ir" / name), cv2.IMREAD_UNCHANGED), cv2.imread(str(pairs / "vi" / name))
    colour = np.stack([gray, np.roll(gray, 5, axis=1), gray // 3], axis=-1)
    cv2.imwrite(str(fused / name), colour[..., ::-1])
    row = evaluate_folder(pairs, fused, progress=False)[0]
    want = fusion_metrics(thermal, visible[..., ::-1], colour)
    for k in METRIC_NAMES:
        assert row[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k
    # visible images of another size: an error unless resizing is asked for
    small = cv2.resize(visible, (visible.shape[1] // 2, visible.shape[0] // 2))
    cv2.imwrite(str(pairs / "vi" / name), small)
    with pytest.raises(SizeMismatchError, match="--resize"):
        evaluate_folder(pairs, fused, progress=False)
    assert len(evaluate_folder(pairs, fused, resize_mismatched=True, progress=False)) == 1
    cv2.imwrite(str(pairs / "vi" / name), visible)
    # a missing fused image is an error by default, skipped with only_fused
    _write_pairs(tmp_path / "two", n=2)
    (tmp_path / "two" / "fused" / "00001N.png").unlink()
    msg = (f"1 of 2 pair(s) have no fused image in {tmp_path / 'two' / 'fused'}; first: '00001N.png' (expected "
           f"{tmp_path / 'two' / 'fused' / '00001N.png'} or the same stem with .png; --only-fused evaluates just the "
           "pairs that have one)")
    with pytest.raises(FusedFolderError, match="^" + re.escape(msg) + "$"):
        evaluate_folder(tmp_path / "two" / "pairs", tmp_path / "two" / "fused", progress=False)
    assert len(evaluate_folder(tmp_path / "two" / "pairs", tmp_path / "two" / "fused", only_fused=True,
                               progress=False)) == 1
    # no fused image at all; a pair too small for the metrics: errors naming the folder or the pair
    (tmp_path / "empty").mkdir()
    with pytest.raises(FusedFolderError, match=f"^no fused image in {re.escape(str(tmp_path / 'empty'))} matches a pair"):
        evaluate_folder(pairs, tmp_path / "empty", only_fused=True, progress=False)
    tiny = tmp_path / "tiny"
    for sub, img in (("pairs/ir", thermal), ("pairs/vi", visible), ("fused", visible)):
        (tiny / sub).mkdir(parents=True)
        cv2.imwrite(str(tiny / sub / name), img[:30, :40])
    with pytest.raises(FusedFolderError, match="^pair '00000N.png': images are 40x30; fusion metrics need"):
        evaluate_folder(tiny / "pairs", tiny / "fused", progress=False)
    # same stem, another suffix: found; a missing folder: a user error naming it
    (fused / name).rename(fused / "00000N.bmp")
    assert find_fused(fused, name) == fused / "00000N.bmp"
    assert find_fused(fused, "00001N.png") is None
    with pytest.raises(FusedFolderError, match="^fused folder .*nope not found$"):
        evaluate_folder(pairs, tmp_path / "nope", progress=False)
    (fused / "00000N.bmp").write_bytes(b"not an image")
    with pytest.raises(FusedFolderError, match="00000N.bmp: not a readable image$"):
        evaluate_folder(pairs, fused, progress=False)
    # summaries leave out NaN and infinities and count what they used
    rows = [dict.fromkeys(METRIC_NAMES, 1.0), dict.fromkeys(METRIC_NAMES, 3.0), dict.fromkeys(METRIC_NAMES, math.nan)]
    rows[1]["PSNR"] = math.inf
    summ = {r["metric"]: r for r in summarize(rows)}
    assert summ["EN"]["mean"] == 2.0 and summ["EN"]["std"] == 1.0 and summ["EN"]["n"] == 2
    assert summ["PSNR"]["mean"] == 1.0 and summ["PSNR"]["std"] == 0.0 and summ["PSNR"]["n"] == 1
    none = {r["metric"]: r for r in summarize(rows[2:])}
    assert math.isnan(none["SD"]["mean"]) and math.isnan(none["SD"]["std"]) and none["SD"]["n"] == 0
    assert none["Nabf"]["higher_is_better"] is False and none["VIF"]["higher_is_better"] is True
