"""Stage-1 training of the VFN fusion backbone (unsupervised: intensity + gradient loss).

Data: the paired folders named in the config (MSRS restricted to its train frame range,
see :mod:`ivif_fusion.data.splits`). Each epoch draws ``samples_per_image`` random crops per
image; crop positions and flips are a pure function of (seed, epoch, sample index), so a
run is reproducible and the same samples are seen whatever the number of processes.
Outputs in ``cfg.out``: ``vfn.pt`` (final weights, kind 'vfn', with config and metadata),
``last_state.pt`` (optimizer + step, for ``resume``), ``log.csv`` and ``config.yaml``.
"""

from __future__ import annotations

import csv
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from .. import __version__
from ..colour import luminance
from ..config import TrainFusionConfig, to_dict
from ..data.paired import PairedFolder
from ..imageops import fit_max_side
from ..data.splits import training_names
from ..losses import fusion_loss, fusion_loss_terms
from ..models import checkpoint
from ..models.backbones import build_backbone
from ..paths import require_data_root, resolve


def load_training_images(cfg: TrainFusionConfig, progress: bool = True) -> tuple[list[np.ndarray], list[str]]:
    """All training pairs as (2, H, W) uint8 arrays [IR, Y], and their 'dataset/name' ids."""
    from tqdm import tqdm

    root = require_data_root(cfg.data_root or None)
    items: list[tuple[PairedFolder, str, str]] = []
    for ds in cfg.datasets:
        folder = PairedFolder(root / ds, resize_mismatched=True, strict=False)
        for n in training_names(ds, folder.names):
            items.append((folder, ds, n))
    if not items:
        raise FileNotFoundError(f"no training pairs found under {root} for datasets {cfg.datasets}")
    images, ids = [], []
    for folder, ds, n in tqdm(items, desc="loading pairs", disable=not progress, unit="pair"):
        s = folder.load(n)
        ir, y = s.ir, luminance(s.vi)
        (ir, y), _ = fit_max_side(cfg.max_side, ir, y)
        images.append(np.clip(np.rint(np.stack([ir, y]) * 255), 0, 255).astype(np.uint8))
        ids.append(f"{ds}/{n}")
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


class ShardedBatches(torch.utils.data.Sampler):
    """Global batches from a per-epoch seeded permutation, each split into equal shards per rank.

    With DDP averaging gradients, W shards of B/W samples give the same update as one batch
    of B samples on one process: training is equivalent whatever the world size.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if global_batch % world:
            raise ValueError(f"batch_size {global_batch} must be divisible by the {world} processes")
        self.n, self.b, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.b

    def __iter__(self):  # noqa: ANN204
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch)).tolist()
        shard = self.b // self.world
        for k in range(len(self)):
            start = k * self.b + self.rank * shard
            yield perm[start:start + shard]


def _lr(step: int, total: int, base: float) -> float:
    """Cosine decay from ``base`` to 5 % of it; short linear warm-up."""
    warm = min(50, total // 20)
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def train(cfg: TrainFusionConfig, progress: bool = True, images: list[np.ndarray] | None = None,
          ids: list[str] | None = None, max_steps: int | None = None) -> Path:
    """Train a fusion backbone (``cfg.arch``); returns the path of the final checkpoint (``<out>/vfn.pt``).

    ``images`` may be given directly (tests); otherwise they are read from the data root.
    Runs under ``torchrun`` too: see :mod:`ivif_fusion.training.distributed` when present.
    """
    from tqdm import tqdm

    dist = _distributed()
    rank0 = dist is None or dist.rank == 0
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = torch.device(dist.device if dist else cfg.device)
    out = resolve(cfg.out)
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
    if images is None:
        images, ids = load_training_images(cfg, progress and rank0)
    ids = ids or [str(i) for i in range(len(images))]

    model = build_backbone(cfg.arch, depth=cfg.depth).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = CropDataset(images, cfg.crop, cfg.samples_per_image, cfg.seed)
    world = dist.world_size if dist else 1
    sampler = ShardedBatches(len(data), cfg.batch_size, cfg.seed, dist.rank if dist else 0, world)
    if len(sampler) == 0:
        raise ValueError(f"{len(data)} samples per epoch are fewer than one batch of {cfg.batch_size}")
    loader = DataLoader(data, batch_sampler=sampler, num_workers=0)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs
    # max_steps stops early (tests, interrupted runs) without changing the LR schedule.
    stop = total if max_steps is None else min(total, max_steps)
    step, start_epoch = 0, 0
    if cfg.resume:
        state = checkpoint.load(resolve(cfg.resume), "vfn-train-state")
        checkpoint.load_state(model, state["state_dict"], cfg.resume)
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        start_epoch = step // steps_per_epoch
    ddp_model = dist.wrap(model) if dist else model

    log_path = out / "log.csv"
    if rank0:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        new_log = not (cfg.resume and log_path.exists())
        log_f = open(log_path, "w" if new_log else "a", newline="")
        log = csv.writer(log_f)
        if new_log:
            log.writerow(["step", "epoch", "lr", "loss", "intensity", "gradient", "seconds"])
    t0 = time.time()
    bar = tqdm(total=stop, initial=step, desc="train fusion", disable=not (progress and rank0), unit="step")
    model.train()
    done = step >= stop
    epoch = start_epoch
    while not done:
        data.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if epoch == start_epoch and i < step - start_epoch * steps_per_epoch:
                continue  # resumed mid-epoch: skip the batches already seen
            batch = batch.to(device)
            ir, y = batch[:, :1], batch[:, 1:2]
            lr = _lr(step, total, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            fused = ddp_model(ir, y)
            loss = fusion_loss(fused, ir, y, cfg.w_int, cfg.w_grad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if rank0 and (step % 10 == 0 or step == total):
                with torch.no_grad():
                    terms = fusion_loss_terms(fused, ir, y)
                log.writerow([step, epoch, f"{lr:.6g}", f"{loss.item():.6f}", f"{terms['intensity'].item():.6f}",
                              f"{terms['gradient'].item():.6f}", f"{time.time() - t0:.1f}"])
                log_f.flush()
            if rank0 and step % 100 == 0:  # periodic state so an interrupted run resumes
                checkpoint.save(out / "last_state.pt", "vfn-train-state", model.cfg.to_dict(), model.state_dict(),
                                {"train_config": to_dict(cfg)}, optimizer=opt.state_dict(), step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step >= stop:
                done = True
                break
        epoch += 1
    bar.close()
    path = out / "vfn.pt"
    if rank0:
        log_f.close()
        meta = {
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "train_config": to_dict(cfg),
            "pairs": len(images),
            "pair_ids_head": ids[:5],
            "steps": step,
            "seconds": round(time.time() - t0, 1),
            "world_size": world,
            "ivif_fusion": __version__,
            "torch": torch.__version__,
        }
        checkpoint.save(path, "vfn", model.cfg.to_dict(), model.state_dict(), meta)
        checkpoint.save(out / "last_state.pt", "vfn-train-state", model.cfg.to_dict(), model.state_dict(), meta,
                        optimizer=opt.state_dict(), step=step)
    if dist:
        dist.barrier()
    return path


def _distributed():  # noqa: ANN202
    """The torchrun context when launched under torchrun (WORLD_SIZE > 1), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from .distributed import DistContext

    return DistContext.from_env()
