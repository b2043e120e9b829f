"""Stage-1 training: seeded, resumable, loss goes down, checkpoint carries config and metadata."""

import numpy as np
import pytest
import torch

from ivif_fusion.train_config import TrainFusionConfig
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

    from ivif_fusion.train_config import TrainRSCConfig
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


def test_thermal_saliency_and_salient_target_loss_by_hand():
    from ivif_fusion.losses import fusion_loss, salient_target_loss, thermal_saliency

    # thermal [[0, 0], [0, 1]]: mean 0.25, population std sqrt(0.1875) = 0.4330, threshold 0.6830 at k=1
    thermal = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    mask = thermal_saliency(thermal, k=1.0, softness=1e-4)
    assert mask.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0], abs=1e-6)
    soft = thermal_saliency(thermal, k=1.0, softness=0.05)
    # the hot pixel sits (1 - 0.6830) / 0.05 = 6.34 softness units above the threshold
    assert soft.flatten()[3].item() == pytest.approx(1 / (1 + np.exp(-(1 - 0.25 - np.sqrt(0.1875)) / 0.05)), rel=1e-5)
    assert soft.flatten()[0].item() == pytest.approx(1 / (1 + np.exp((0.25 + np.sqrt(0.1875)) / 0.05)), rel=1e-4)
    fused = torch.tensor([[[[0.5, 0.5], [0.5, 0.6]]]], requires_grad=True)
    loss = salient_target_loss(fused, thermal, mask)
    assert loss.item() == pytest.approx(0.4, abs=1e-5)  # only the hot pixel counts: |0.6 - 1|
    loss.backward()
    assert fused.grad.flatten()[:3].abs().max().item() < 1e-5 and fused.grad.flatten()[3].item() == pytest.approx(-1.0, abs=1e-4)
    # a scene without anything hotter than mean + 3 std has (almost) no mask and a zero-ish term
    flat = torch.full((1, 1, 4, 4), 0.3)
    assert salient_target_loss(flat, flat, thermal_saliency(flat, k=3.0)).item() == 0.0
    # off by default: the stage-1 loss is unchanged unless w_sal is set
    f, t, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    base = fusion_loss(f, t, y)
    assert fusion_loss(f, t, y, w_sal=0.0).item() == base.item()
    extra = salient_target_loss(f, t, thermal_saliency(t, 1.0)).item()
    assert fusion_loss(f, t, y, w_sal=2.0).item() == pytest.approx(base.item() + 2.0 * extra, rel=1e-6)


def test_training_with_the_salient_term_logs_it_and_records_its_weight(tmp_path):
    p = train(_cfg(tmp_path / "s", w_salient=1.0, epochs=6), progress=False, images=_images())
    header, *rows = (tmp_path / "s" / "log.csv").read_text().splitlines()
    assert header.split(",") == ["step", "epoch", "lr", "loss", "intensity", "gradient", "salient", "scd", "seconds"]
    assert rows and all(float(r.split(",")[6]) >= 0 for r in rows)
    assert checkpoint.load(p)["meta"]["train_config"]["w_salient"] == 1.0


def test_scd_term_by_hand_and_against_the_metric():
    from ivif_fusion.losses import fusion_loss, scd_t
    from ivif_fusion.metrics.fusion import scd

    # F = IR + Y: F - Y = IR and F - IR = Y, both correlations are 1
    thermal = torch.tensor([[[[0.1, 0.2], [0.3, 0.0]]]])
    y = torch.tensor([[[[0.4, 0.1], [0.0, 0.3]]]])
    assert scd_t(thermal + y, thermal, y).item() == pytest.approx(2.0, abs=1e-6)
    # F = Y: F - Y = 0 (constant, correlation 0); F - IR = Y - IR, corr(Y - IR, Y) by hand
    d, yc = (y - thermal).flatten().numpy(), y.flatten().numpy()
    d, yc = d - d.mean(), yc - yc.mean()
    by_hand = float((d * yc).sum() / np.sqrt((d * d).sum() * (yc * yc).sum()))
    assert scd_t(y, thermal, y).item() == pytest.approx(by_hand, abs=1e-6)
    # same value as the evaluator-exact metric on a random image triple (0..255 scale is irrelevant)
    rng = np.random.default_rng(1)
    a, b, f = (rng.random((16, 20)) for _ in range(3))
    t = [torch.from_numpy(v)[None, None].float() for v in (f, a, b)]
    assert scd_t(*t).item() == pytest.approx(scd(a * 255, b * 255, f * 255), rel=1e-4)
    # the weighted term adds w * (2 - SCD) to the loss
    base = fusion_loss(t[0], t[1], t[2])
    assert fusion_loss(t[0], t[1], t[2], w_scd=0.5).item() == pytest.approx(
        base.item() + 0.5 * (2 - scd_t(*t).item()), rel=1e-5)


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    first = train(_cfg(tmp_path / "a"), progress=False, images=_images())
    start = checkpoint.load(first, "vfn")["state_dict"]
    tuned = train(_cfg(tmp_path / "b", init=str(first), lr=0.0, w_scd=1.0), progress=False, images=_images())
    for k, v in checkpoint.load(tuned, "vfn")["state_dict"].items():  # lr 0: the weights stay the initial ones
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)
    fresh = train(_cfg(tmp_path / "c", lr=0.0), progress=False, images=_images())
    assert any(not torch.equal(v, start[k]) for k, v in checkpoint.load(fresh, "vfn")["state_dict"].items())
    with pytest.raises(Exception, match="do not match"):
        train(_cfg(tmp_path / "d", init=str(first), depth=2), progress=False, images=_images())
