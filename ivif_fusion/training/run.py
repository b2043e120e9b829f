"""The skeleton every training job shares.

- :func:`seed_everything`: torch and numpy seeded from ``cfg.seed``, ``cfg.threads`` torch threads
  (:func:`set_threads` alone for a job whose trainer seeds itself: ultralytics);
- :func:`cosine_lr`: the one learning-rate schedule, linear warm-up then cosine decay to 5 %;
  each job passes its own warm-up (:func:`fusion_warmup`, :func:`rsc_warmup`, none for VIFA);
- :func:`load_training_images` and :class:`CropDataset`: the training pairs of the configured
  datasets as (2, H, W) uint8 [IR, Y] arrays, and deterministic random crops of them;
- :func:`prepare_out`, :class:`CsvLog` and :func:`run_meta`: the output folder with its
  ``config.yaml``, the ``log.csv`` and the metadata stored in every checkpoint.

The run fields themselves (``data_root``, ``seed``, ``threads``, ``device``, ``out``) are
:class:`ivif_fusion.config.TrainRunConfig`, which every job's config inherits.
"""

from __future__ import annotations

import csv
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from .. import __version__
from ..colour import luminance
from ..config import to_dict
from ..train_config import TrainRunConfig
from ..data.shared import open_shared, split_items
from ..imageops import fit_max_side
from ..paths import require_data_root, resolve

#: the schedule ends at this fraction of the base learning rate
LR_FLOOR = 0.05


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def seed_everything(cfg: TrainRunConfig) -> None:
    """Seed torch's and numpy's global generators with ``cfg.seed``; use ``cfg.threads`` CPU threads."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    set_threads(cfg.threads)


def cosine_lr(step: int, total: int, base: float, warmup: int = 0) -> float:
    """Learning rate of ``step`` (0-based) of ``total``: ``warmup`` steps rising linearly to ``base``,
    then cosine decay from ``base`` to ``LR_FLOOR * base`` over the remaining steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


def fusion_warmup(total: int) -> int:
    """Warm-up of backbone training: 5 % of the steps, at most 50."""
    return min(50, total // 20)


def rsc_warmup(total: int) -> int:
    """Warm-up of RSC training: 10 % of the steps, at most 20 (a new module from scratch on frozen networks)."""
    return min(20, total // 10)


def load_training_images(data_root: str, datasets: Sequence[str], max_side: int,
                         progress: bool = True) -> tuple[list[np.ndarray], list[str]]:
    """The training pairs of ``datasets`` (MSRS: train frame range only) as (2, H, W) uint8 arrays
    [IR, Y], downscaled to ``max_side`` (0: kept), and their ``dataset/file`` ids."""
    from tqdm import tqdm

    root = require_data_root(data_root or None)
    items = []
    for ds in datasets:
        reader = open_shared(root, ds, resize_mismatched=True)
        items += [(reader, ds, it) for it in split_items(reader, ds, "train")]
    if not items:
        raise FileNotFoundError(f"no training pairs found under {root} for datasets {list(datasets)}")
    images, ids = [], []
    for reader, ds, it in tqdm(items, desc="loading pairs", disable=not progress, unit="pair"):
        s = reader.load(it)
        thermal, y = s.thermal, luminance(s.visible)
        (thermal, y), _ = fit_max_side(max_side, thermal, y)
        images.append(np.clip(np.rint(np.stack([thermal, y]) * 255), 0, 255).astype(np.uint8))
        ids.append(f"{ds}/{it.file}")
    return images, ids


class CropDataset(Dataset):
    """Deterministic random crops: sample ``i`` of epoch ``e`` depends only on (seed, e, i)."""

    def __init__(self, images: list[np.ndarray], crop: int, samples_per_image: int, seed: int) -> None:
        self.images, self.crop, self.k, self.seed = images, crop, samples_per_image, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.k

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = self.images[i // self.k]
        _, h, w = img.shape
        c = self.crop
        if h < c or w < c:  # small images are padded by reflection to the crop size
            img = np.pad(img, ((0, 0), (0, max(0, c - h)), (0, max(0, c - w))), mode="reflect")
            _, h, w = img.shape
        y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        patch = img[:, y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            patch = patch[:, :, ::-1]
        if rng.random() < 0.5:
            patch = patch[:, ::-1, :]
        return torch.from_numpy(np.ascontiguousarray(patch)).float() / 255.0

    def random_batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` samples drawn with ``generator`` (with replacement), stacked: (size, 2, crop, crop)."""
        idx = torch.randint(len(self), (size,), generator=generator).tolist()
        return torch.stack([self[i] for i in idx])


def prepare_out(cfg: TrainRunConfig) -> Path:
    """Create ``cfg.out`` and write the run's ``config.yaml`` there; returns the folder."""
    out = resolve(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out


class CsvLog:
    """``log.csv`` of a run: a header, then rows flushed as they are written (a crashed run keeps its log)."""

    def __init__(self, path: Path, header: Sequence[str], append: bool = False) -> None:
        self.file = open(path, "a" if append else "w", newline="")  # noqa: SIM115 - closed by close()
        self.writer = csv.writer(self.file)
        if not append:
            self.row(header)

    def row(self, values: Sequence[Any]) -> None:
        self.writer.writerow(values)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def command_line() -> str:
    """The command that started this process, as ``ivif <subcommand> ...``."""
    return "ivif " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_meta(cfg: TrainRunConfig, **fields: Any) -> dict[str, Any]:
    """Checkpoint metadata: the command, the whole config, library versions, and the job's own ``fields``."""
    return {"command": command_line(), "train_config": to_dict(cfg), **fields,
            "ivif_fusion": __version__, "torch": torch.__version__}
