"""FSIM: Feature SIMilarity (Zhang, Zhang, Mou, Zhang, IEEE TIP 2011), in torch.

FSIM compares two images through two low-level features:

- **phase congruency** (PC), computed as in the paper (Kovesi's 2-D formulation with
  log-Gabor filters): ``n_scales`` = 4 scales (minimum wavelength 6, multiplier 2,
  sigma_on_f 0.55) x ``n_orients`` = 4 orientations (angular spread ``pi/n_orients / 1.2``),
  a low-pass (cut-off 0.45, order 15) on the radial filters, the phase-deviation energy
  ``sum_n (E·cos + O·sin - |E·sin - O·cos|)``, and per orientation a noise threshold
  ``T = (mu + k·sigma) / 1.7`` from the Rayleigh model of the smallest-scale amplitude
  (median-based estimate, ``k`` = 2); ``PC = sum_o max(Energy_o - T_o, 0) / sum_o sum_n A_no``.
- **gradient magnitude** (GM) with the Scharr operator.

Similarity maps ``S_PC = (2 PC1 PC2 + T1) / (PC1² + PC2² + T1)`` (T1 = 0.85),
``S_G = (2 G1 G2 + T2) / (G1² + G2² + T2)`` (T2 = 160, images in 0..255), and
``FSIM = sum(S_PC · S_G · PC_m) / sum(PC_m)`` with ``PC_m = max(PC1, PC2)``.

Differences from the reference implementation (so "approximately the paper's FSIM"):
the paper first downsamples by ``max(1, round(min(H, W) / 256))`` with an averaging filter,
here done with ``avg_pool2d`` (same rule, ``downsample=True``); FFT filtering assumes periodic
borders as the paper's code does; the noise statistics are computed per image and orientation
in float32. No colour (FSIMc) term: inputs are single-channel.

Everything is batched: a (N, C, H, W) tensor gives N·C maps at once, which is how
:mod:`ivif_fusion.key_channels` compares all channels of a feature layer with each other
(PC and GM are computed once per channel; the pairwise combination is cheap:
:func:`pairwise_fsim`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..ops import check_shape

T1 = 0.85
T2 = 160.0
_EPS = 1e-4


@dataclass(frozen=True)
class PCOptions:
    """Phase congruency parameters (paper defaults)."""

    n_scales: int = 4
    n_orients: int = 4
    min_wavelength: float = 6.0
    mult: float = 2.0
    sigma_on_f: float = 0.55
    d_theta_on_sigma: float = 1.2
    k: float = 2.0


def _freq_grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised radius (0..~0.7) and angle of the FFT grid (unshifted, DC at [0, 0])."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float32)
    fx = torch.fft.fftfreq(w, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(fy, fx, indexing="ij")
    radius = torch.sqrt(xx ** 2 + yy ** 2)
    theta = torch.atan2(-yy, xx)
    return radius, theta


def _filters(h: int, w: int, opts: PCOptions, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Radial log-Gabor filters (one per scale, low-passed) and angular spreads (one per orientation)."""
    radius, theta = _freq_grid(h, w, device)
    r = radius.clone()
    r[0, 0] = 1.0  # avoid log(0); the DC value is zeroed below
    lowpass = 1.0 / (1.0 + (radius / 0.45) ** (2 * 15))
    radial = []
    for s in range(opts.n_scales):
        f0 = 1.0 / (opts.min_wavelength * opts.mult ** s)
        lg = torch.exp(-(torch.log(r / f0) ** 2) / (2 * math.log(opts.sigma_on_f) ** 2)) * lowpass
        lg[0, 0] = 0.0
        radial.append(lg)
    theta_sigma = math.pi / opts.n_orients / opts.d_theta_on_sigma
    spreads = []
    for o in range(opts.n_orients):
        angle = o * math.pi / opts.n_orients
        ds = torch.sin(theta) * math.cos(angle) - torch.cos(theta) * math.sin(angle)
        dc = torch.cos(theta) * math.cos(angle) + torch.sin(theta) * math.sin(angle)
        dtheta = torch.abs(torch.atan2(ds, dc))
        spreads.append(torch.exp(-(dtheta ** 2) / (2 * theta_sigma ** 2)))
    return radial, spreads


def phase_congruency(x: torch.Tensor, opts: PCOptions | None = None) -> torch.Tensor:
    """Phase congruency map of every channel: (N, C, H, W) in 0..255 -> (N, C, H, W) in 0..1."""
    check_shape(x, 4, "phase_congruency")
    opts = opts or PCOptions()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h, w).float()
    spec = torch.fft.fft2(flat)
    radial, spreads = _filters(h, w, opts, x.device)
    # spatial-domain radial filters, for the expected noise energy (paper's EstSumAn2 / EstSumAiAj)
    ifft_filt = [torch.fft.ifft2(f).real * math.sqrt(h * w) for f in radial]
    sum_an2 = sum((f ** 2).sum() for f in ifft_filt)
    sum_aiaj = sum((ifft_filt[i] * ifft_filt[j]).sum()
                   for i in range(len(ifft_filt)) for j in range(i + 1, len(ifft_filt)))
    energy_all = torch.zeros_like(flat)
    an_all = torch.zeros_like(flat)
    for spread in spreads:
        sum_e = torch.zeros_like(flat)
        sum_o = torch.zeros_like(flat)
        sum_an = torch.zeros_like(flat)
        parts = []  # (even, odd) responses per scale
        em_n = None
        for s, lg in enumerate(radial):
            filt = lg * spread
            eo = torch.fft.ifft2(spec * filt)
            e, o = eo.real.contiguous(), eo.imag.contiguous()
            parts.append((e, o))
            an = torch.hypot(e, o)
            if s == 0:
                em_n = (filt ** 2).sum()
                an0 = an
            sum_an += an
            sum_e += e
            sum_o += o
        x_energy = torch.hypot(sum_e, sum_o).add_(_EPS)
        mean_e, mean_o = sum_e.div_(x_energy), sum_o.div_(x_energy)
        energy = torch.zeros_like(flat)
        for e, o in parts:
            energy += e * mean_e + o * mean_o - torch.abs(e * mean_o - o * mean_e)
        # noise threshold per map: Rayleigh model from the median squared smallest-scale response
        median_e2n = (an0 ** 2).reshape(n * c, -1).median(dim=1).values
        mean_e2n = -median_e2n / math.log(0.5)
        noise_power = mean_e2n / em_n
        est_noise_energy2 = 2 * noise_power * sum_an2 + 4 * noise_power * sum_aiaj
        tau = torch.sqrt(est_noise_energy2 / 2)
        t = (tau * math.sqrt(math.pi / 2) + opts.k * torch.sqrt((2 - math.pi / 2) * tau ** 2)) / 1.7
        energy_all += torch.clamp(energy - t.view(-1, 1, 1), min=0)
        an_all += sum_an
    pc = energy_all / (an_all + _EPS)
    return pc.float().reshape(n, c, h, w)


_SCHARR = torch.tensor([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]]) / 16.0


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Scharr gradient magnitude per channel (replicate padding): (N, C, H, W) -> (N, C, H, W)."""
    check_shape(x, 4, "gradient_magnitude")
    c = x.shape[1]
    kx = _SCHARR.to(x).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(xp, kx, groups=c)
    gy = F.conv2d(xp, kx.transpose(2, 3), groups=c)
    return torch.sqrt(gx ** 2 + gy ** 2)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """The paper's pre-scaling: average-pool by ``max(1, round(min(H, W) / 256))``."""
    f = max(1, round(min(x.shape[-2:]) / 256))
    return F.avg_pool2d(x, f, f) if f > 1 else x


def features(x: torch.Tensor, opts: PCOptions | None = None, scale: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(PC, GM) of every channel of a (N, C, H, W) image batch in 0..255 (optionally pre-scaled)."""
    check_shape(x, 4, "fsim features")
    x = x.float()
    if scale:
        x = downsample(x)
    return phase_congruency(x, opts), gradient_magnitude(x)


def fsim_from_features(pc1: torch.Tensor, g1: torch.Tensor, pc2: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """FSIM over the last two dims from precomputed features (broadcasting over leading dims)."""
    s_pc = (2 * pc1 * pc2 + T1) / (pc1 ** 2 + pc2 ** 2 + T1)
    s_g = (2 * g1 * g2 + T2) / (g1 ** 2 + g2 ** 2 + T2)
    pcm = torch.maximum(pc1, pc2)
    weighted = (s_pc * s_g * pcm).sum((-2, -1)) / pcm.sum((-2, -1)).clamp_min(1e-12)
    # no congruent structure at all (pure noise, flat maps): fall back to the unweighted mean
    plain = (s_pc * s_g).mean((-2, -1))
    return torch.where(pcm.sum((-2, -1)) > 0, weighted, plain)


def fsim(a: torch.Tensor, b: torch.Tensor, opts: PCOptions | None = None, scale: bool = True) -> torch.Tensor:
    """FSIM of two (N, C, H, W) batches in 0..255, per (n, c): returns (N, C), 1 for identical images.

    >>> x = torch.rand(1, 1, 64, 64) * 255
    >>> float(fsim(x, x))
    1.0
    """
    check_shape(a, 4, "fsim a")
    if a.shape != b.shape:
        raise ValueError(f"fsim: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
    pa, ga = features(a, opts, scale)
    pb, gb = features(b, opts, scale)
    return fsim_from_features(pa, ga, pb, gb)


def minmax_255(x: torch.Tensor) -> torch.Tensor:
    """Each (n, c) map min-max normalised to 0..255 (flat maps become 0)."""
    lo = x.amin((-2, -1), keepdim=True)
    hi = x.amax((-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12) * 255.0


def pairwise_fsim(x: torch.Tensor, opts: PCOptions | None = None, scale: bool = True,
                  normalise: str = "minmax") -> torch.Tensor:
    """FSIM between every pair of channels of each image: (N, C, H, W) -> (N, C, C), symmetric.

    ``normalise``: ``"minmax"`` maps every channel to 0..255 first (feature maps have arbitrary
    scale and FSIM's constants assume 0..255 images); ``"none"`` uses the values as they are.
    """
    check_shape(x, 4, "pairwise_fsim")
    if normalise == "minmax":
        x = minmax_255(x.float())
    elif normalise != "none":
        raise ValueError(f"pairwise_fsim: normalise must be 'minmax' or 'none', got {normalise!r}")
    pc, g = features(x, opts, scale)
    c = x.shape[1]
    out = torch.empty(x.shape[0], c, c)
    for i in range(c):
        out[:, i, :] = fsim_from_features(pc[:, i:i + 1], g[:, i:i + 1], pc, g)
    return out
