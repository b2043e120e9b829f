"""Stage-1 training of the VFN fusion backbone (unsupervised: intensity + gradient loss).

Data: the paired folders named in the config (MSRS restricted to its train frame range,
see :mod:`ivif_fusion.data.splits`), loaded by :func:`ivif_fusion.training.run.load_training_images`.
Each epoch draws ``samples_per_image`` random crops per image (:class:`~ivif_fusion.training.run.CropDataset`);
crop positions and flips are a pure function of (seed, epoch, sample index), so a run is
reproducible and the same samples are seen whatever the number of processes.
Outputs in ``cfg.out``: ``vfn.pt`` (final weights, kind 'vfn', with config and metadata),
``last_state.pt`` (optimizer + step, for ``resume``), ``log.csv`` and ``config.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import to_dict
from ..train_config import TrainFusionConfig
from ..losses import fusion_loss_terms, weighted_fusion_loss
from ..models import checkpoint
from ..models.backbones import build_backbone
from ..paths import resolve
from .run import (CropDataset, CsvLog, cosine_lr, fusion_warmup, load_training_images, prepare_out, run_meta,
                  seed_everything)


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


def train(cfg: TrainFusionConfig, progress: bool = True, images: list[np.ndarray] | None = None,
          ids: list[str] | None = None, max_steps: int | None = None) -> Path:
    """Train a fusion backbone (``cfg.arch``); returns the path of the final checkpoint (``<out>/vfn.pt``).

    ``images`` may be given directly (tests); otherwise they are read from the data root.
    Runs under ``torchrun`` too: see :mod:`ivif_fusion.training.distributed` when present.
    """
    from tqdm import tqdm

    dist = _distributed()
    rank0 = dist is None or dist.rank == 0
    seed_everything(cfg)
    device = torch.device(dist.device if dist else cfg.device)
    out = resolve(cfg.out)
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
    if images is None:
        images, ids = load_training_images(cfg.data_root, cfg.datasets, cfg.max_side, progress and rank0)
    ids = ids or [str(i) for i in range(len(images))]

    model = build_backbone(cfg.arch, **({"depth": cfg.depth} if cfg.depth else {})).to(device)
    if cfg.init and not cfg.resume:
        start = checkpoint.load(resolve(cfg.init), "vfn")
        checkpoint.load_state(model, start["state_dict"], cfg.init)
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
    warmup = fusion_warmup(total)
    if rank0:
        prepare_out(cfg)
        log = CsvLog(log_path, ["step", "epoch", "lr", "loss", "intensity", "gradient", "salient", "scd", "seconds"],
                     append=bool(cfg.resume and log_path.exists()))
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
            thermal, y = batch[:, :1], batch[:, 1:2]
            lr = cosine_lr(step, total, cfg.lr, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            fused = ddp_model(thermal, y)
            log_now = rank0 and ((step + 1) % 10 == 0 or step + 1 == total)  # every term is logged on these steps
            terms = fusion_loss_terms(fused, thermal, y, cfg.salient_k, salient=log_now or bool(cfg.w_salient),
                                      scd=log_now or bool(cfg.w_scd))
            loss = weighted_fusion_loss(terms, cfg.w_int, cfg.w_grad, cfg.w_salient, cfg.w_scd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log_now:
                log.row([step, epoch, f"{lr:.6g}", f"{loss.item():.6f}", f"{terms['intensity'].item():.6f}",
                         f"{terms['gradient'].item():.6f}", f"{terms['salient'].item():.6f}",
                         f"{terms['scd'].item():.6f}", f"{time.time() - t0:.1f}"])
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
        log.close()
        meta = run_meta(cfg, pairs=len(images), pair_ids_head=ids[:5], steps=step, seconds=round(time.time() - t0, 1),
                        world_size=world)
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
