"""Stage-1 training: seeded, resumable, loss goes down, checkpoint carries config and metadata."""

import numpy as np
import pytest
import torch

from ivif_fusion.config import TrainFusionConfig
from ivif_fusion.models import checkpoint
from ivif_fusion.training.fusion import ShardedBatches, train
from ivif_fusion.training.run import CropDataset


def _images(n=4, h=40, w=48):
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(n):
        ir = np.zeros((h, w), np.uint8)
        ir[10:25, 12:20] = 230  # a hot object
        y = (rng.random((h, w)) * 60 + np.linspace(0, 150, w)[None]).astype(np.uint8)  # textured scene
        imgs.append(np.stack([ir, y]))
    return imgs


def _cfg(tmp_path, **kw):
    base = dict(depth=1, crop=24, batch_size=4, samples_per_image=2, epochs=3, lr=3e-3, seed=3, threads=1,
                out=str(tmp_path))
    base.update(kw)
    return TrainFusionConfig(**base)


def test_same_seed_same_weights_and_loss_decreases(tmp_path):
    p1 = train(_cfg(tmp_path / "a"), progress=False, images=_images())
    p2 = train(_cfg(tmp_path / "b"), progress=False, images=_images())
    s1, s2 = checkpoint.load(p1, "vfn")["state_dict"], checkpoint.load(p2, "vfn")["state_dict"]
    for k in s1:
        torch.testing.assert_close(s1[k], s2[k], rtol=0, atol=0)
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,loss")
    meta = checkpoint.load(p1)["meta"]
    assert meta["steps"] == 6 and meta["train_config"]["seed"] == 3 and meta["pairs"] == 4


def test_training_reduces_the_loss(tmp_path):
    from ivif_fusion.losses import fusion_loss
    from ivif_fusion.models.vfn import VFN, VFNConfig

    imgs = _images()
    batch = torch.stack([torch.from_numpy(i).float() / 255 for i in imgs])
    torch.manual_seed(3)
    before = fusion_loss(VFN(VFNConfig(depth=1))(batch[:, :1], batch[:, 1:]), batch[:, :1], batch[:, 1:]).item()
    p = train(_cfg(tmp_path, epochs=12), progress=False, images=imgs)
    m = checkpoint.load_vfn(p)
    with torch.no_grad():
        after = fusion_loss(m(batch[:, :1], batch[:, 1:]), batch[:, :1], batch[:, 1:]).item()
    assert after < 0.8 * before


def test_resume_continues_exactly(tmp_path):
    full = train(_cfg(tmp_path / "full"), progress=False, images=_images())
    train(_cfg(tmp_path / "part", epochs=3), progress=False, images=_images(), max_steps=2)
    resumed = train(_cfg(tmp_path / "part", resume=str(tmp_path / "part" / "last_state.pt")), progress=False,
                    images=_images())
    a, b = checkpoint.load(full)["state_dict"], checkpoint.load(resumed)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_crops_are_deterministic_and_sharding_splits_global_batches():
    ds = CropDataset(_images(2), crop=16, samples_per_image=3, seed=1)
    ds.set_epoch(2)
    a = ds[4]
    ds.set_epoch(0)
    ds.set_epoch(2)
    torch.testing.assert_close(ds[4], a)
    one = list(ShardedBatches(12, 4, seed=0))
    r0 = list(ShardedBatches(12, 4, seed=0, rank=0, world=2))
    r1 = list(ShardedBatches(12, 4, seed=0, rank=1, world=2))
    assert [a + b for a, b in zip(r0, r1)] == one
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatches(12, 3, seed=0, world=2)


def test_train_fusion_cli_on_a_tiny_paired_folder(tmp_path, capsys):
    import cv2

    from ivif_fusion.cli import main

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        for sub, shape in (("ir", (40, 48)), ("vi", (40, 48, 3))):
            (tmp_path / "data" / "Tiny" / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "data" / "Tiny" / sub / name), rng.integers(0, 255, shape).astype(np.uint8))
    rc = main(["train", "fusion", "--out", str(tmp_path / "run"), "--set", f"data_root={tmp_path / 'data'}",
               "--set", "datasets=[Tiny]", "--set", "depth=1", "--set", "crop=24", "--set", "batch_size=2",
               "--set", "epochs=1", "--set", "samples_per_image=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {tmp_path / 'run' / 'vfn.pt'}" in out
    meta = checkpoint.load(tmp_path / "run" / "vfn.pt", "vfn")["meta"]
    assert meta["pairs"] == 2 and meta["steps"] == 1 and meta["train_config"]["datasets"] == ["Tiny"]
    assert main(["train", "fusion", "--set", "epoch=1"]) == 1  # unknown key: one ERROR line, no traceback
    assert "did you mean 'epochs'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the shared training skeleton


def test_cosine_lr_keeps_each_jobs_warmup():
    import math

    from ivif_fusion.training.run import cosine_lr, fusion_warmup, rsc_warmup

    # backbone: 1000 steps -> 50 warm-up steps; RSC: 200 steps -> 20; VIFA: none
    assert (fusion_warmup(1000), fusion_warmup(100), rsc_warmup(200), rsc_warmup(50)) == (50, 5, 20, 5)
    assert cosine_lr(0, 1000, 1.0, 50) == pytest.approx(1 / 50)
    assert cosine_lr(49, 1000, 1.0, 50) == pytest.approx(1.0)
    assert cosine_lr(50, 1000, 1.0, 50) == pytest.approx(1.0)  # cosine starts at the top
    # half-way through the cosine part: 0.05 + 0.95 * 0.5 = 0.525 of the base
    assert cosine_lr(50 + 475, 1000, 2.0, 50) == pytest.approx(2 * 0.525)
    assert cosine_lr(999, 1000, 1.0, 50) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 949 / 950)))
    # no warm-up (VIFA): step 0 is the base rate, the end approaches 5 %
    assert cosine_lr(0, 150, 5e-4) == 5e-4
    assert cosine_lr(75, 150, 1.0) == pytest.approx(0.525)
    assert cosine_lr(150, 150, 1.0) == pytest.approx(0.05)


def test_run_folder_log_and_meta(tmp_path):
    import yaml

    from ivif_fusion.config import TrainRSCConfig
    from ivif_fusion.training.run import CsvLog, prepare_out, run_meta

    cfg = TrainRSCConfig(out=str(tmp_path / "run"), seed=7)
    out = prepare_out(cfg)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 7 and saved["out"] == str(tmp_path / "run") and saved["dataset"] == "MSRS"
    log = CsvLog(out / "log.csv", ["step", "loss"])
    log.row([1, "0.5"])
    assert (out / "log.csv").read_text().splitlines() == ["step,loss", "1,0.5"]  # flushed before close
    log.close()
    again = CsvLog(out / "log.csv", ["step", "loss"], append=True)  # a resumed run adds rows, no second header
    again.row([2, "0.4"])
    again.close()
    assert (out / "log.csv").read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4"]
    meta = run_meta(cfg, steps=3)
    assert meta["steps"] == 3 and meta["train_config"]["seed"] == 7 and meta["command"].startswith("ivif")
