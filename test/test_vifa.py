"""VIFA: FSIM, key-channel selection, head gradient isolation, 'vifa' checkpoints, pipeline contract, training."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ivif_fusion.config import runtime_defaults
from ivif_fusion.train_config import TrainVifaConfig
from ivif_fusion.key_channels import (SelectionOptions, channel_entropy, cluster_channels, report_markdown,
                                      select_from_features)
from ivif_fusion.metrics.fsim import fsim, pairwise_fsim
from ivif_fusion.models import checkpoint
from ivif_fusion.models.checkpoint import CheckpointError
from ivif_fusion.models.vfn import VFN, VFNConfig
from ivif_fusion.models.vifa import (build_student, check_heads, forward_layer, head_parameters, load_vifa,
                                     load_vifa_model, model_card, save_vifa)
from ivif_fusion.training.vifa import key_channel_loss, train, vifa_losses


def _smooth(n, h=96, w=128, seed=0):
    """Smooth random fields in 0..1: images with structure (FSIM needs phase congruency)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, h, w, generator=g)
    k = torch.exp(-torch.arange(-6, 7.0) ** 2 / 8)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (6, 6, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, 6, 6), mode="reflect"), k.view(1, 1, -1, 1))
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return (x - lo) / (hi - lo)


# ---------------------------------------------------------------------- FSIM


def test_fsim_identity_is_one_and_decreases_with_noise():
    x = _smooth(1, 120, 160) * 255
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    assert float(fsim(x, x)) == pytest.approx(1.0, abs=1e-6)
    vals = [float(fsim(x, (x + s * noise).clamp(0, 255))) for s in (2, 8, 32)]
    assert 1.0 > vals[0] > vals[1] > vals[2] > 0.3
    with pytest.raises(ValueError, match="shapes differ"):
        fsim(x, x[..., :-1])


def test_pairwise_fsim_is_symmetric_and_scale_invariant_with_minmax():
    a = _smooth(2, seed=3)
    x = torch.cat([a, 7 * a - 2, _smooth(2, seed=4)], 1)
    s = pairwise_fsim(x)
    assert s.shape == (2, 3, 3)
    torch.testing.assert_close(s, s.transpose(1, 2))
    torch.testing.assert_close(s[:, 0, 1], torch.ones(2), atol=1e-5, rtol=0)  # scale/offset removed by min-max
    assert float(s[:, 0, 2].max()) < 0.9


# ---------------------------------------------------------------------- key channels


def test_channel_entropy_exact_values():
    ramp = torch.arange(256.0).view(1, 1, 16, 16)          # every bin once: 8 bits
    two = torch.tensor([0.0, 1.0]).repeat(128).view(1, 1, 16, 16)  # two equal bins: 1 bit
    e = channel_entropy(torch.cat([ramp, two], 1), bins=256)
    torch.testing.assert_close(e, torch.tensor([[8.0, 1.0]]))
    assert float(channel_entropy(ramp, bins=16)) == pytest.approx(4.0)


def test_cluster_rules_complete_vs_single_linkage():
    # chain 0~1~2 where 0 and 2 are not similar; 3 alone
    sim = np.array([[1, .95, .5, .1], [.95, 1, .95, .1], [.5, .95, 1, .1], [.1, .1, .1, 1]])
    assert cluster_channels(sim, 0.9, "single") == [[0, 1, 2], [3]]
    assert cluster_channels(sim, 0.9, "complete") == [[0, 1], [2], [3]]
    assert cluster_channels(sim, 0.99, "complete") == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="square"):
        cluster_channels(np.ones((2, 3)), 0.9)


def test_key_channel_selection_on_constructed_duplicates():
    a, b, c = _smooth(3, seed=10), _smooth(3, seed=11), _smooth(3, seed=12)
    g = torch.Generator().manual_seed(0)
    q = lambda x, levels: torch.round(x * levels) / levels  # noqa: E731 - quantised copy: same structure, less entropy
    feats = torch.cat([
        5 * q(a, 16),                                          # 0: scaled copy of a, 17 levels
        a,                                                     # 1: a itself, highest entropy of {0, 1, 2}
        q(a, 32) - 3 + 0.01 * torch.randn(a.shape, generator=g),  # 2: offset, noisy, 33 levels
        b,                                                     # 3: different structure
        q(b, 12),                                              # 4: copy of 3 with lower entropy
        c,                                                     # 5: alone
    ], 1)
    sel = select_from_features([feats[:2], feats[2:]], SelectionOptions(threshold=0.9))
    assert sel.clusters == [[0, 1, 2], [3, 4], [5]]
    assert sel.channels == [1, 3, 5]
    assert sel.weights == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert sel.n_images == 3
    assert sel.entropy[4] < sel.entropy[3] and sel.entropy[0] < sel.entropy[1]
    uni = select_from_features([feats], SelectionOptions(weighting="uniform"))
    assert uni.channels == [1, 3, 5] and uni.weights == pytest.approx([1 / 3] * 3)
    md = report_markdown(sel)
    assert "| 0 | 0, 1, 2 | 1 |" in md and "| 1 | 3, 4 | 3 |" in md


def test_key_channel_loss_weights_only_key_channels():
    t = torch.zeros(1, 4, 2, 2)
    s = torch.zeros(1, 4, 2, 2)
    s[:, 0] = 1.0   # key, weight 0.25
    s[:, 1] = 5.0   # not a key channel: ignored
    s[:, 2] = 2.0   # key, weight 0.75
    loss = key_channel_loss(s, t, [0, 2], [0.25, 0.75])
    assert float(loss) == pytest.approx(0.25 * 1 + 0.75 * 4)


# ---------------------------------------------------------------------- student / checkpoints


def _student(tasks=("a", "b", "c"), seed=0):
    torch.manual_seed(seed)
    return build_student(VFN(VFNConfig(depth=1)), list(tasks))


def _selection(channels=(0, 3), weights=(0.5, 0.5)):
    from ivif_fusion.key_channels import KeyChannelSelection

    return KeyChannelSelection("fusion", list(channels), [[c] for c in channels], list(weights), [], [], 1)


def test_heads_get_gradients_only_from_their_own_task():
    student = _student()
    ir, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        t_feat = forward_layer(student.backbone, ir, y, "fusion")[0] + 0.1
        refs = {t: torch.rand(2, 1, 16, 16) for t in ("a", "b", "c")}
    losses = vifa_losses(student, ir, y, t_feat, refs, _selection(), layer="fusion", w_fusion=0.5)
    losses["task:a"].backward(retain_graph=True)
    assert student.heads["a"].weight.grad is not None and student.heads["a"].weight.grad.abs().sum() > 0
    assert student.heads["b"].weight.grad is None and student.heads["c"].weight.grad is None
    assert student.backbone.enc_ir.stem[0].weight.grad.abs().sum() > 0  # the shared backbone does learn from a
    student.zero_grad(set_to_none=True)
    losses["key"].backward(retain_graph=True)  # key-channel term: backbone only, no head
    assert all(student.heads[t].weight.grad is None for t in "abc")
    student.zero_grad(set_to_none=True)
    losses["total"].backward()
    assert all(student.heads[t].weight.grad.abs().sum() > 0 for t in "abc")


def test_student_starts_as_the_teacher():
    teacher = VFN(VFNConfig(depth=1)).eval()
    student = build_student(teacher, ["x", "y"]).eval()
    ir, y = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        outs = student(ir, y)
        ref = teacher(ir, y)
    for o in outs:
        torch.testing.assert_close(o, ref)
    head_p, bb_p = head_parameters(student)
    assert head_p == 4 * 9 + 1 and 0 < 100 * head_p / bb_p < 1


def test_checkpoint_roundtrip_and_head_errors(tmp_path):
    student = _student(("detection", "segmentation"))
    path = save_vifa(tmp_path / "v.pt", student, {"note": "test"})
    backbone, heads = load_vifa(path)
    assert sorted(heads) == ["detection", "segmentation"] and not backbone.training
    torch.testing.assert_close(heads["detection"].weight, student.heads["detection"].weight)
    load_vifa(path, expected=["segmentation", "detection"])  # same set, any order
    with pytest.raises(CheckpointError, match=r"missing head\(s\) \['fusion'\]"):
        load_vifa(path, expected=["detection", "segmentation", "fusion"])
    with pytest.raises(CheckpointError, match=r"extra head\(s\) \['segmentation'\]"):
        load_vifa(path, expected=["detection"])
    with pytest.raises(CheckpointError, match="missing head.*extra head"):
        check_heads(["a", "b"], ["b", "c"])
    # config and weights disagree about the heads
    ck = checkpoint.load(path)
    ck["config"]["heads"] = ["detection", "segmentation", "fusion"]
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="weights hold heads"):
        load_vifa_model(tmp_path / "bad.pt")
    checkpoint.save(tmp_path / "vfn.pt", "vfn", VFNConfig().to_dict(), VFN().state_dict())
    with pytest.raises(CheckpointError, match="expected 'vifa'"):
        load_vifa(tmp_path / "vfn.pt")


def test_pipeline_runs_one_head_per_vifa_task(tmp_path):
    from ivif_fusion.colour import luminance, rgb_to_ycbcr, ycbcr_to_rgb
    from ivif_fusion.runtime.pipeline import Pipeline, PipelineConfigError

    student = _student(("det", "seg", "fus"))
    with torch.no_grad():  # make the heads differ
        for i, t in enumerate(("det", "seg", "fus")):
            student.heads[t].bias.fill_(0.3 * i)
    path = save_vifa(tmp_path / "v.pt", student)
    tasks = [{"name": "det", "kind": "fusion", "customization": "vifa"},
             {"name": "fus", "kind": "fusion", "customization": "vifa"}]
    cfg = runtime_defaults({"pipeline.vifa_weights": str(path), "pipeline.tasks": tasks, "pipeline.threads": 1})
    pipe = Pipeline.from_config(cfg)
    rng = np.random.default_rng(0)
    ir = rng.random((24, 32)).astype(np.float32)
    rgb = rng.random((24, 32, 3)).astype(np.float32)
    outs, timings = pipe.run_arrays(ir, rgb)
    assert sorted(outs) == ["det", "fus"] and "head:det" in timings and "head:seg" not in timings
    with torch.no_grad():
        shared = student.backbone.shared_features(torch.from_numpy(ir)[None, None],
                                                  torch.from_numpy(luminance(rgb))[None, None])
        for t in ("det", "fus"):
            ycc = rgb_to_ycbcr(rgb)
            ycc[..., 0] = student.head(t, shared)[0, 0].numpy()
            expected = np.clip(np.rint(ycbcr_to_rgb(ycc) * 255), 0, 255)
            assert np.abs(outs[t].fused_rgb.astype(int) - expected).max() <= 1
    assert np.abs(outs["det"].fused_rgb.astype(int) - outs["fus"].fused_rgb.astype(int)).max() > 5
    bad = runtime_defaults({"pipeline.vifa_weights": str(path), "pipeline.threads": 1,
                                  "pipeline.tasks": [{"name": "tracking", "kind": "fusion", "customization": "vifa"}]})
    with pytest.raises(PipelineConfigError, match="no head for task"):
        Pipeline.from_config(bad)


# ---------------------------------------------------------------------- training


def test_train_tiny_end_to_end_with_cache_and_fallback(tmp_path):
    torch.manual_seed(0)
    teacher = VFN(VFNConfig(depth=1))
    smooth = _smooth(4, 48, 64, seed=5)
    images = [np.clip(np.rint(np.stack([smooth[i, 0].numpy(), smooth[(i + 1) % 4, 0].numpy()]) * 255), 0, 255)
              .astype(np.uint8) for i in range(4)]
    cfg = TrainVifaConfig(
        tasks=[{"name": "detection", "reference": "rsc", "weights": str(tmp_path / "none.pt"), "fallback": "finetune"},
               {"name": "fusion", "reference": "teacher"}],
        finetune_steps=2, select_images=3, select_side=48, crop=32, batch_size=2, steps=3, threads=1, layer="fusion",
        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"))
    path = train(cfg, progress=False, images=images, ids=[f"p{i}" for i in range(4)], teacher=teacher)
    model = load_vifa_model(path, expected=["detection", "fusion"])
    meta = checkpoint.load(path)["meta"]
    assert meta["references"]["detection"].startswith("FALLBACK (rsc unavailable")
    assert meta["references"]["fusion"] == "teacher generic output"
    assert meta["key_channels"]["n_images"] == 3 and not meta["key_channels"]["from_cache"]
    assert sorted(sum(meta["key_channels"]["clusters"], [])) == list(range(16))
    assert (tmp_path / "run" / "key_channels.md").read_text().startswith("# Key channels of layer 'fusion'")
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "lr", "total", "key", "ref:detection", "ref:fusion", "seconds"]
    assert len(rows) == 2 and rows[1].startswith("3,")
    card = model_card(path, "VIFA: test")
    assert card.startswith("## VIFA: test") and "`detection`, `fusion`" in card and "FALLBACK" in card
    assert meta["reference_weights"]["detection"]["path"].endswith("reference_detection.pt")
    assert checkpoint.load(meta["reference_weights"]["detection"]["path"], "vfn")["meta"]["reference_for"] == "detection"
    cached = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert cached["channels"] == meta["key_channels"]["channels"]
    # same teacher + options + images: the selection comes from the cache; training is seeded
    path2 = train(cfg, progress=False, images=images, ids=[f"p{i}" for i in range(4)], teacher=teacher)
    assert checkpoint.load(path2)["meta"]["key_channels"]["from_cache"]
    m2 = load_vifa_model(path2)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, m2.state_dict()[k])


def test_eval_input_gives_each_task_its_head(tmp_path):
    from ivif_fusion.colour import luminance, recombine
    from ivif_fusion.models.vifa import head_fuse_numpy
    from ivif_fusion.tasks.inputs import INPUT_LOADERS, InputError, input_from_checkpoint

    torch.manual_seed(0)
    student = build_student(VFN(VFNConfig(depth=1)), ["detection", "fusion"])
    with torch.no_grad():
        student.heads["fusion"].bias.add_(0.2)  # the two heads now differ
    path = save_vifa(tmp_path / "v.pt", student)
    assert "vifa" in INPUT_LOADERS  # registered with the other loaders, no import of models.vifa needed
    fuse = input_from_checkpoint(path)
    rng = np.random.default_rng(1)
    ir, vi = rng.random((24, 32), dtype=np.float32), rng.random((24, 32, 3), dtype=np.float32)
    det, fus = fuse(ir, vi, "detection"), fuse(ir, vi, "fusion")
    model = load_vifa_model(path)
    np.testing.assert_allclose(det, recombine(head_fuse_numpy(model, ir, luminance(vi), "detection"), vi), atol=1e-6)
    assert det.shape == (24, 32, 3) and not np.allclose(det, fus)
    with pytest.raises(InputError, match="no head for task 'segmentation'"):
        fuse(ir, vi, "segmentation")
