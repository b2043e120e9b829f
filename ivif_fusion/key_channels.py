"""Key-channel selection for VIFA's key-channel-constrained distillation.

A teacher layer has redundant channels (near copies up to scale/noise). VIFA distils only one
representative per group of similar channels, so the student stays free elsewhere:

1. **Similarity**: for every image of the selection set, FSIM (:mod:`ivif_fusion.metrics.fsim`)
   between every pair of channels of the chosen layer, each channel min-max normalised to
   0..255 first (``normalise: minmax``; FSIM's constants assume 0..255 images and feature maps
   have arbitrary scale); the matrix is the mean over images.
2. **Clusters**: agglomerative clustering on that matrix with a similarity threshold (default 0.9).
   ``linkage: complete`` (default) merges two clusters only when *every* cross pair is at least
   the threshold, so every member of a cluster is similar to every other; ``single`` merges when
   any pair is (connected components of the thresholded graph: chains can join dissimilar ends).
3. **Key channel** of each cluster: the member with the largest entropy (Shannon, bits) of the
   ``bins``-bin histogram of the min-max normalised channel, averaged over images; ties go to
   the lower index.
4. **Weights** of the distillation loss per key channel: ``cluster_size`` (default, size / C: a
   channel standing for many counts more; they sum to 1), ``uniform`` (1 / K) or ``entropy``
   (entropy / sum of key entropies).

The result (:class:`KeyChannelSelection`) is cached as JSON keyed by the teacher's checksum,
the options and the image ids (:func:`select_cached`), and :func:`report_markdown` renders a
small inspectable report (similarity summary, clusters, chosen channels, entropies).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .metrics.fsim import pairwise_fsim
from .ops import check_shape

LINKAGES = ("complete", "single")
WEIGHTINGS = ("cluster_size", "uniform", "entropy")


@dataclass(frozen=True)
class SelectionOptions:
    """Options of the selection (all part of the cache key)."""

    layer: str = "fusion"
    threshold: float = 0.9
    linkage: str = "complete"
    normalise: str = "minmax"
    bins: int = 256
    weighting: str = "cluster_size"

    def __post_init__(self) -> None:
        if self.linkage not in LINKAGES:
            raise ValueError(f"linkage must be one of {LINKAGES}, got {self.linkage!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")


@dataclass
class KeyChannelSelection:
    """Chosen key channels of one layer, with everything needed to inspect the choice."""

    layer: str
    channels: list[int]                 # key channel per cluster (cluster order)
    clusters: list[list[int]]           # members of each cluster, sorted
    weights: list[float]                # loss weight per key channel
    entropy: list[float]                # mean entropy (bits) of every channel of the layer
    similarity: list[list[float]]       # mean pairwise FSIM (C x C)
    n_images: int
    options: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)   # teacher checksum, image ids hash, ...

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "KeyChannelSelection":
        return cls(**d)


def channel_entropy(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Entropy (bits) of each channel's histogram after per-map min-max normalisation: (N, C, H, W) -> (N, C)."""
    check_shape(x, 4, "channel_entropy")
    n, c = x.shape[:2]
    flat = x.detach().float().reshape(n * c, -1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    u = (flat - lo) / (hi - lo).clamp_min(1e-12)
    idx = torch.clamp((u * bins).long(), max=bins - 1)
    hist = torch.zeros(n * c, bins).scatter_add_(1, idx, torch.ones_like(u))
    p = hist / hist.sum(1, keepdim=True)
    ent = -(p * torch.log2(p.clamp_min(1e-30))).sum(1)
    return ent.reshape(n, c)


def cluster_channels(sim: np.ndarray, threshold: float, linkage: str = "complete") -> list[list[int]]:
    """Agglomerative clustering of channels whose similarity reaches ``threshold``.

    Repeatedly merges the two clusters of highest linkage similarity (complete: the minimum
    over cross pairs; single: the maximum) while it is >= ``threshold``. Deterministic: ties
    are broken by the lowest cluster indices. Returns clusters (sorted members) ordered by
    their smallest member.
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"cluster_channels: expected a square matrix, got shape {sim.shape}")
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    sym = np.minimum(sim, sim.T)  # a pair is as similar as its less similar direction
    clusters = [[i] for i in range(sym.shape[0])]
    reduce = np.min if linkage == "complete" else np.max
    while len(clusters) > 1:
        best, pair = -math.inf, None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                s = float(reduce(sym[np.ix_(clusters[a], clusters[b])]))
                if s > best:
                    best, pair = s, (a, b)
        if best < threshold:
            break
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return sorted(clusters, key=lambda c: c[0])


def _weights(clusters: list[list[int]], keys: list[int], entropy: np.ndarray, weighting: str) -> list[float]:
    c = sum(len(m) for m in clusters)
    if weighting == "cluster_size":
        return [len(m) / c for m in clusters]
    if weighting == "uniform":
        return [1.0 / len(clusters)] * len(clusters)
    e = np.array([entropy[k] for k in keys])
    return (e / e.sum()).tolist() if e.sum() > 0 else [1.0 / len(keys)] * len(keys)


def select_from_features(batches: Iterable[torch.Tensor], opts: SelectionOptions | None = None,
                         progress: bool = False) -> KeyChannelSelection:
    """Key channels from feature maps: an iterable of (N_i, C, H_i, W_i) tensors (any sizes).

    Similarity and entropy are averaged over all images of all batches.
    """
    from tqdm import tqdm

    opts = opts or SelectionOptions()
    sim_sum, ent_sum, n = None, None, 0
    for feats in tqdm(batches, desc="key channels", disable=not progress, unit="batch"):
        check_shape(feats, 4, "key-channel features")
        feats = feats.detach().float().cpu()
        s = pairwise_fsim(feats, normalise=opts.normalise).sum(0)
        e = channel_entropy(feats, opts.bins).sum(0)
        sim_sum = s if sim_sum is None else sim_sum + s
        ent_sum = e if ent_sum is None else ent_sum + e
        n += feats.shape[0]
    if n == 0:
        raise ValueError("key-channel selection needs at least one image")
    sim = (sim_sum / n).numpy()
    ent = (ent_sum / n).numpy()
    clusters = cluster_channels(sim, opts.threshold, opts.linkage)
    # highest entropy wins; -index as the second key makes ties go to the lower index
    keys = [max(m, key=lambda i: (round(float(ent[i]), 9), -i)) for m in clusters]
    return KeyChannelSelection(
        layer=opts.layer, channels=keys, clusters=clusters, weights=_weights(clusters, keys, ent, opts.weighting),
        entropy=[round(float(v), 6) for v in ent], similarity=[[round(float(v), 6) for v in row] for row in sim],
        n_images=n, options=asdict(opts))


def cache_key(teacher_checksum: str, opts: SelectionOptions, image_ids: list[str], side: int) -> str:
    """Hash of everything that determines a selection."""
    blob = json.dumps({"teacher": teacher_checksum, "options": asdict(opts), "images": image_ids, "side": side},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def select_cached(cache_dir: str | Path, key: str, compute, source: dict | None = None,  # noqa: ANN001
                  progress: bool = False) -> tuple[KeyChannelSelection, Path, bool]:
    """Load ``<cache_dir>/key_channels_<key>.json`` or compute (``compute() -> selection``) and write it.

    Also writes the markdown report next to it. Returns (selection, json path, from_cache).
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"key_channels_{key}.json"
    if path.is_file():
        try:
            return KeyChannelSelection.from_dict(json.loads(path.read_text())), path, True
        except (ValueError, TypeError):
            pass  # unreadable cache entry: recompute and overwrite
    sel = compute()
    sel.source = {**(source or {}), "cache_key": key}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sel.to_dict(), indent=1))
    tmp.replace(path)
    path.with_suffix(".md").write_text(report_markdown(sel))
    return sel, path, False


def report_markdown(sel: KeyChannelSelection) -> str:
    """Small human-readable report of a selection."""
    sim = np.array(sel.similarity)
    c = sim.shape[0]
    off = sim[~np.eye(c, dtype=bool)] if c > 1 else np.array([1.0])
    lines = [f"# Key channels of layer '{sel.layer}'", "",
             f"{c} channels, {sel.n_images} images; options: "
             + ", ".join(f"{k}={v}" for k, v in sel.options.items()), ""]
    if sel.source:
        lines += ["Source: " + ", ".join(f"{k}={v}" for k, v in sel.source.items()), ""]
    lines += ["## Pairwise FSIM (mean over images)", "",
              f"off-diagonal: min {off.min():.3f}, median {np.median(off):.3f}, max {off.max():.3f}; "
              f"pairs >= threshold {sel.options.get('threshold')}: "
              f"{int((np.triu(sim, 1) >= sel.options.get('threshold', 0.9)).sum())} of {c * (c - 1) // 2}", "",
              "| ch | " + " | ".join(str(j) for j in range(c)) + " |", "|---" * (c + 1) + "|"]
    for i in range(c):
        lines.append(f"| {i} | " + " | ".join(f"{sim[i, j]:.2f}" for j in range(c)) + " |")
    lines += ["", "## Clusters and key channels", "", "| cluster | members | key channel | key entropy (bits) | weight |",
              "|---|---|---|---|---|"]
    for k, (m, ch, w) in enumerate(zip(sel.clusters, sel.channels, sel.weights)):
        lines.append(f"| {k} | {', '.join(map(str, m))} | {ch} | {sel.entropy[ch]:.3f} | {w:.3f} |")
    lines += ["", "## Entropy per channel (bits)", "", "| ch | entropy | key |", "|---|---|---|"]
    for i, e in enumerate(sel.entropy):
        lines.append(f"| {i} | {e:.3f} | {'yes' if i in sel.channels else ''} |")
    return "\n".join(lines) + "\n"
