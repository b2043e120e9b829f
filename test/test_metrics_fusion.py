"""Fusion metrics: hand-computed values, identities, ordering sanity, input checks, and the CLI."""

from __future__ import annotations

import csv
import math
import time

import cv2
import numpy as np
import pytest

from ivif_fusion.metrics import fusion as fm
from ivif_fusion.metrics.fusion import (HIGHER_IS_BETTER, METRIC_NAMES, average_gradient, correlation, entropy,
                                        fusion_metrics, mutual_information_pair, psnr, qabf_nabf, scd,
                                        spatial_frequency, ssim_pair, std_dev, to_gray255, vif_pair)


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


# ---------------------------------------------------------------- single-image metrics by hand


def test_constant_image_has_zero_information_metrics():
    f = np.full((50, 60), 77.0)
    assert entropy(f) == 0.0
    assert std_dev(f) == 0.0
    assert spatial_frequency(f) == 0.0
    assert average_gradient(f) == 0.0


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
    # (H-1)x(W-1) = 1x2 region: (dx, dy) = (1, 2) and (2, 1) -> sqrt(5/2) both
    assert average_gradient(f) == pytest.approx(math.sqrt(2.5), abs=1e-12)


# ---------------------------------------------------------------- two-image identities


def test_mi_of_image_with_itself_is_its_entropy_in_nats():
    _, vi = _scene()
    v = vi.astype(np.float64)
    assert mutual_information_pair(v, v) == pytest.approx(entropy(v) * math.log(2), abs=1e-10)
    # independent-looking: a constant image carries no information about anything
    assert mutual_information_pair(v, np.full_like(v, 9.0)) == 0.0


def test_ssim_of_identical_images_is_one_and_matches_skimage():
    from skimage.metrics import structural_similarity

    ir, vi = _scene()
    a, b = ir.astype(np.float64), vi.astype(np.float64)
    assert ssim_pair(a, a) == pytest.approx(1.0, abs=1e-12)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim_pair(a, b) == pytest.approx(ref, abs=1e-10)


def test_cc_psnr_and_scd_identities():
    _, vi = _scene()
    m = fusion_metrics(vi, vi, vi)
    assert m["CC"] == pytest.approx(1.0, abs=1e-12)
    assert m["PSNR"] == math.inf  # documented: A = B = F gives +inf
    assert m["SSIM"] == pytest.approx(2.0, abs=1e-12)
    # PSNR by hand: A = B = 0, F = 10 -> MSE 100
    z = np.zeros((3, 3))
    assert psnr(z, z, z + 10) == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-12)
    # SCD of F = A + B is corr(A, A) + corr(B, B) = 2
    ir, vi = _scene()
    a, b = ir.astype(np.float64), vi.astype(np.float64)
    assert scd(a, b, a + b) == pytest.approx(2.0, abs=1e-12)
    assert correlation(a, np.full_like(a, 3.0)) == 0.0  # documented convention for a constant image
    # per pixel (max - A)^2 + (max - B)^2 = (A - B)^2: F = max(A, B) has the PSNR of F = A and of F = B
    assert psnr(a, b, np.maximum(a, b)) == pytest.approx(psnr(a, b, a), abs=1e-12)
    assert psnr(a, b, b) == pytest.approx(psnr(a, b, a), abs=1e-12)


def test_vif_of_image_with_itself_is_one_and_flat_reference_is_nan():
    ir, _ = _scene()
    a = ir.astype(np.float64)
    assert vif_pair(a, a) == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(vif_pair(np.full_like(a, 5.0), a))


def test_qabf_of_f_equal_a_with_flat_b_is_the_sigmoid_product():
    # F = A: every edge of A has relative strength 1 and orientation distance 0, so Q^AF is
    # Tg/(1+exp(kg*(1-Dg))) * Ta/(1+exp(ka*(1-Da))) everywhere A has an edge; B has no edges (w_B = 0).
    ir, _ = _scene()
    a = ir.astype(np.float64)
    b = np.full_like(a, 100.0)
    expected = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert expected == pytest.approx(0.9747936, abs=1e-7)  # 0.998847 * 0.975918
    q, n = qabf_nabf(a, b, a)
    assert q == pytest.approx(expected, abs=1e-12)
    assert n == 0.0  # F's edges are never stronger than A's
    # both sources flat: no edge to preserve -> undefined
    q2, n2 = qabf_nabf(b, b, a)
    assert math.isnan(q2) and math.isnan(n2)


def test_orientation_is_compared_modulo_pi():
    # a contrast-inverted copy has the same edges: full Q, exactly as F = A
    ir, _ = _scene()
    a = ir.astype(np.float64)
    b = np.zeros_like(a)
    q_same, _ = qabf_nabf(a, b, a)
    q_inv, _ = qabf_nabf(a, b, 255.0 - a)
    assert q_inv == pytest.approx(q_same, abs=1e-12)


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


def test_bad_inputs_raise_clear_errors():
    ir, vi = _scene()
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
    assert "00000N.png" in err and "64x50" in err


def test_separable_filter_equals_2d_valid_correlation():
    # VIF and SSIM rest on this: OpenCV filtering cropped to the window-inside region
    from scipy.signal import correlate2d

    x = np.random.default_rng(3).random((23, 30)) * 255
    for size, sigma in ((17, 3.4), (11, 1.5), (3, 0.6)):
        k = fm._gauss1d(size, sigma)
        assert k.sum() == pytest.approx(1.0)
        ref = correlate2d(x, np.outer(k, k), mode="valid")
        got = fm._filter_valid(x, k)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
