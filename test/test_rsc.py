"""RSC: identity at init, the three fixes (determinism, gradients, batched cost), checkpoints."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ivif_fusion.models import checkpoint
from ivif_fusion.models.rsc import (RSC, CustomizedFusion, RSCConfig, RSCError, dynamic_conv, load_customized,
                                    pool_descriptor, save_rsc, select_bases)
from ivif_fusion.models.vfn import VFN, VFNConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyTask(torch.nn.Module):
    """A task-like network on (N, 3, H, W) RGB: features + a dense regression loss."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(6, 12, 3, stride=2, padding=1))
        self.requires_grad_(False)

    def features(self, images):
        return self.body(images)

    def loss(self, images, targets):
        return F.smooth_l1_loss(self.features(images).mean(1), targets)


def _setup(seed=0, **kw):
    torch.manual_seed(seed)
    vfn = VFN(VFNConfig(depth=1)).eval().requires_grad_(False)
    rsc = RSC(vfn.cfg, ["detection", "segmentation"], 12, **kw)
    return vfn, rsc, CustomizedFusion(vfn, rsc)


def _inputs(n=2, h=24, w=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def test_identity_at_init_exact():
    vfn, rsc, model = _setup()
    ir, y = _inputs()
    desc = torch.randn(2, 12, 6, 8)
    for mode in (True, False):
        model.train(mode)
        for task in ("detection", "segmentation"):
            assert torch.equal(model(ir, y, task, desc), vfn(ir, y))
            assert torch.equal(model(ir, y, task), vfn(ir, y))


def test_eval_is_deterministic_and_train_uses_noise():
    _, rsc, model = _setup()
    with torch.no_grad():
        rsc.gamma.fill_(0.5)  # a trained-like state, so the customization is visible
    ir, y = _inputs()
    desc = torch.randn(2, 12)
    model.eval()
    a, b = model(ir, y, "detection", desc), model(ir, y, "detection", desc)
    assert torch.equal(a, b)
    f_ir, f_vi = model.encode(ir, y)
    w1, w2 = rsc.selection(f_ir, f_vi, "detection", desc), rsc.selection(f_ir, f_vi, "detection", desc)
    assert torch.equal(w1, w2)
    model.train()
    w3, w4 = rsc.selection(f_ir, f_vi, "detection", desc), rsc.selection(f_ir, f_vi, "detection", desc)
    assert not torch.equal(w3, w4), "training mode should sample Gumbel noise"
    rsc.eval()
    # the customization is real (differs from the generic output) and task-dependent
    vfn_out = model.backbone(ir, y)
    det, seg = model(ir, y, "detection", desc), model(ir, y, "segmentation", desc)
    assert (det - vfn_out).abs().max() > 1e-4
    assert (det - seg).abs().max() > 1e-6


def _grad_check(model, rsc, task_net, steps_before=1):
    ir, y = _inputs(seed=5)
    cbcr = torch.rand(2, 2, 24, 32, generator=torch.Generator().manual_seed(6))
    target = torch.rand(2, 6, 8, generator=torch.Generator().manual_seed(7))
    from ivif_fusion.colour import ycbcr_to_rgb_t

    def loss_fn():
        generic = ycbcr_to_rgb_t(torch.cat([model.backbone(ir, y), cbcr], 1))
        desc = pool_descriptor(task_net.features(generic))
        fused = model(ir, y, "detection", desc)
        return task_net.loss(ycbcr_to_rgb_t(torch.cat([fused, cbcr], 1), clip=False), target)

    opt = torch.optim.SGD(rsc.parameters(), lr=0.05)
    model.train()
    # at init only gamma can receive gradient (everything else is multiplied by gamma = 0) ...
    rsc.zero_grad()
    loss_fn().backward()
    assert rsc.gamma.grad.abs().min() > 0
    for _ in range(steps_before):  # ... and one step later every parameter learns
        opt.step()
        rsc.zero_grad()
        loss_fn().backward()
    return {n: p.grad for n, p in rsc.named_parameters()}


@pytest.mark.parametrize("top_k", [0, 4])
def test_every_parameter_gets_gradient(top_k):
    _, rsc, model = _setup(top_k=top_k)
    grads = _grad_check(model, rsc, TinyTask())
    names = [n for n, _ in rsc.named_parameters()]
    assert "bank" in names and "keys" in names and "desc_proj.detection.weight" in names
    for name, g in grads.items():
        if name.startswith("desc_proj.segmentation") or name == "task_embed":
            continue
        assert g is not None and g.abs().sum() > 0, f"parameter {name} receives no gradient"
    assert grads["task_embed"][0].abs().sum() > 0  # the detection row
    assert torch.all(grads["task_embed"][1] == 0)  # the other task's row is untouched
    if top_k:  # straight-through: every basis gets gradient, not only the selected top-k
        assert (grads["bank"].flatten(1).abs().sum(1) > 0).all()


def test_select_bases_hard_topk_forward_soft_backward():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    w = select_bases(logits, 1.0, top_k=2)
    soft = torch.softmax(logits.detach(), -1)
    expect = torch.tensor([[soft[0, 0], soft[0, 1], 0, 0]]) / (soft[0, 0] + soft[0, 1])
    torch.testing.assert_close(w.detach(), expect)
    (w * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.all(logits.grad != 0)  # unselected bases get the softmax's gradient
    torch.testing.assert_close(select_bases(logits, 0.5).sum(), torch.tensor(1.0))


def test_dynamic_conv_equals_per_sample_convs():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 9, 11)
    k = torch.randn(3, 5, 4, 3, 3)
    out = dynamic_conv(x, k, dilation=2)
    for i in range(3):
        torch.testing.assert_close(out[i:i + 1], F.conv2d(x[i:i + 1], k[i], padding=2, dilation=2))
    assert out.shape == (3, 5, 9, 11)
    with pytest.raises(ValueError):
        dynamic_conv(x, torch.randn(2, 5, 4, 3, 3))


def test_branch_kernels_from_bank():
    _, rsc, _ = _setup()
    assert [tuple(p) for p in rsc.cfg.prototypes] == [(1, 1), (3, 1), (3, 2), (3, 3)]
    flat = rsc.bank.detach().flatten(1)
    gram = flat @ flat.t()
    # orthogonal bank: off-diagonal zero, equal norms (sqrt(C) scaling of orthonormal rows)
    torch.testing.assert_close(gram, torch.eye(16) * 8.0, atol=1e-4, rtol=0)
    w = torch.zeros(2, 1, 4, 16)
    w[..., 3] = 1.0  # every branch selects basis 3
    ks = rsc.kernels(w)
    assert ks[0].shape == (2, 8, 8, 1, 1) and ks[1].shape == (2, 8, 8, 3, 3)
    torch.testing.assert_close(ks[1][0], rsc.bank[3])
    torch.testing.assert_close(ks[0][1, :, :, 0, 0], rsc.bank[3].sum((2, 3)) / 3)


def test_encode_once_customize_per_task_matches_forward():
    _, rsc, model = _setup()
    with torch.no_grad():
        rsc.gamma.normal_()
    model.eval()
    ir, y = _inputs()
    d = {"detection": torch.randn(2, 12), "segmentation": None}
    outs = model.forward_tasks(ir, y, d)
    for t, desc in d.items():
        torch.testing.assert_close(outs[t], model(ir, y, t, desc))
    npy = model.fuse_numpy(ir[0, 0].numpy(), y[0, 0].numpy(), "segmentation")
    torch.testing.assert_close(torch.from_numpy(npy), outs["segmentation"][0, 0])


def test_bad_task_and_descriptor_raise():
    _, _, model = _setup()
    ir, y = _inputs()
    with pytest.raises(RSCError, match="no task"):
        model(ir, y, "depth")
    with pytest.raises(RSCError, match="descriptor"):
        model(ir, y, "detection", torch.randn(2, 7))
    with pytest.raises(RSCError, match="width"):
        CustomizedFusion(VFN(VFNConfig(width=16)), RSC(VFNConfig(), ["a"]))
    with pytest.raises(RSCError):
        RSC(VFNConfig(), ["a", "a"])


def test_embedding_only_rsc_has_no_descriptor_params():
    rsc = RSC(VFNConfig(), ["detection"], None)
    assert not any(n.startswith("desc_proj") for n, _ in rsc.named_parameters())
    f = torch.randn(1, 8, 8, 8)
    out = rsc.eval()(f, f, "detection")
    assert torch.equal(out[0], f)


def test_descriptor_mean_tracks_training_descriptors():
    _, rsc, model = _setup()
    ir, y = _inputs()
    model.train()
    desc = torch.full((2, 12), 2.0)
    for _ in range(3):
        model(ir, y, "detection", desc)
    expect = 2.0 * (1 - (1 - rsc.cfg.desc_momentum) ** 3)
    torch.testing.assert_close(rsc.desc_mean("detection"), torch.full((12,), expect))
    model.eval()
    model(ir, y, "detection", torch.zeros(2, 12))  # eval never updates it
    torch.testing.assert_close(rsc.desc_mean("detection"), torch.full((12,), expect))


def test_checkpoint_round_trip(tmp_path):
    vfn, rsc, model = _setup(top_k=3)
    with torch.no_grad():
        rsc.gamma.normal_()
        rsc.desc_mean("detection").fill_(0.3)
    path = save_rsc(tmp_path / "rsc.pt", rsc, vfn.cfg, {"note": "test"})
    loaded = load_customized(path, vfn)
    assert loaded.rsc.cfg == rsc.cfg and isinstance(loaded.rsc.cfg, RSCConfig)
    assert not loaded.training
    ir, y = _inputs()
    model.eval()
    torch.testing.assert_close(loaded(ir, y, "detection"), model(ir, y, "detection"))
    with pytest.raises(checkpoint.CheckpointError, match="backbone config"):
        load_customized(path, VFN(VFNConfig(depth=2)))
    with pytest.raises(checkpoint.CheckpointError, match="'rsc'"):
        checkpoint.save(tmp_path / "v.pt", "vfn", vfn.cfg.to_dict(), vfn.state_dict())
        load_customized(tmp_path / "v.pt", vfn)


# ---------------------------------------------------------------------- losses and training


def test_reward_punishment_values_and_gradient():
    from ivif_fusion.losses import reward_punishment, rsc_task_loss

    x = torch.tensor(2.0, requires_grad=True)
    rp = reward_punishment(x * 1.0, torch.tensor(1.5), alpha=5.0)
    assert rp.item() == pytest.approx(2.5)
    rp.backward()
    assert x.grad.item() == pytest.approx(5.0)
    assert reward_punishment(torch.tensor(1.0), 1.5).item() == 0.0
    ir, y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    parts = rsc_task_loss(torch.tensor(3.0), torch.tensor(1.0), torch.maximum(ir, y), ir, y, alpha=2.0, w_fid=0.0)
    assert parts["total"].item() == pytest.approx(3.0 + 2.0 * 2.0)
    assert rsc_task_loss(torch.tensor(3.0), None, y, ir, y)["reward_punishment"].item() == 0.0


def test_crop_boxes_hand_values():
    from ivif_fusion.training.rsc_batches import crop_boxes
    import numpy as np

    boxes = np.array([[0, 10, 10, 30, 50], [2, 90, 0, 130, 20], [1, 200, 200, 210, 210]], np.float32)
    out = crop_boxes(boxes, x0=5, y0=0, size=100, min_visible=0.4, flip=False)
    # box 0 fully inside, shifted by x0; box 1: 10 of 40 px wide inside (25 %) -> dropped; box 2 outside
    np.testing.assert_allclose(out, [[0, 5, 10, 25, 50]])
    flipped = crop_boxes(boxes, x0=5, y0=0, size=100, min_visible=0.2, flip=True)
    np.testing.assert_allclose(flipped, [[0, 75, 10, 95, 50], [2, 0, 0, 15, 20]])


class TinyDetector(TinyTask):
    """Duck-typed detection adapter: loss over (K, 5) pixel boxes, features for the descriptor."""

    TASK = "detection"

    def loss(self, images, targets):
        heat = self.features(images).mean(1)  # (N, h, w)
        tgt = torch.zeros_like(heat)
        for i, t in enumerate(targets):
            for b in torch.as_tensor(t).reshape(-1, 5):
                tgt[i, int(b[2]) // 4:int(b[4]) // 4 + 1, int(b[1]) // 4:int(b[3]) // 4 + 1] = 1.0
        return F.mse_loss(heat, tgt)


def _tiny_training(tmp_path, name, **over):
    import numpy as np

    from ivif_fusion.config import load
    from ivif_fusion.train_config import TrainRSCConfig
    from ivif_fusion.training.rsc import LabelledPair, train

    rng = np.random.default_rng(0)
    pairs = [LabelledPair(f"p{i}", rng.integers(0, 256, (48, 64), dtype=np.uint8),
                          rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                          np.array([[0, 8, 8, 24, 30]], np.float32)) for i in range(3)]
    cfg = load(TrainRSCConfig, None, {"steps": 4, "crop": 32, "batch_size": 2, "threads": 1,
                                      "out": str(tmp_path / name), "lr": 0.01, **over})
    torch.manual_seed(0)
    vfn = VFN(VFNConfig(depth=1))
    return train(cfg, progress=False, backbone=vfn, adapters={"detection": TinyDetector()}, pairs=pairs), vfn


def test_training_writes_checkpoint_log_and_is_seeded(tmp_path):
    import csv

    path, vfn = _tiny_training(tmp_path, "a")
    ckpt = checkpoint.load(path, "rsc")
    assert ckpt["config"]["backbone"] == vfn.cfg.to_dict()
    assert ckpt["config"]["rsc"]["tasks"] == ["detection"]
    assert ckpt["config"]["rsc"]["descriptor_dims"] == {"detection": 12}
    assert ckpt["meta"]["steps"] == 4 and ckpt["meta"]["train_config"]["crop"] == 32
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[0]["detection_ref"]) == pytest.approx(float(rows[0]["detection_task"]))  # identity at step 1
    model = load_customized(path, vfn)
    assert model.rsc.gamma.abs().sum() > 0  # it learned something
    path_b, _ = _tiny_training(tmp_path, "b")
    sa, sb = checkpoint.load(path)["state_dict"], checkpoint.load(path_b)["state_dict"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_training_embedding_mode_and_previous_reference(tmp_path):
    path, _ = _tiny_training(tmp_path, "c", descriptor="embedding", reference="previous", top_k=2)
    ckpt = checkpoint.load(path, "rsc")
    assert ckpt["config"]["rsc"]["descriptor_dims"] == {}
    assert ckpt["config"]["rsc"]["top_k"] == 2


def test_train_rsc_cli_rejects_missing_weights(tmp_path, capsys):
    from ivif_fusion.cli import main

    rc = main(["train", "rsc", "--out", str(tmp_path / "x"), "--set", "backbone=" + str(tmp_path / "none.pt")])
    assert rc == 1
    assert "not found" in capsys.readouterr().err


def test_training_through_the_real_yolo_adapter(tmp_path):
    # The detection adapter's letterbox + ultralytics loss pass gradients back to every RSC parameter.
    import numpy as np

    from ivif_fusion.colour import ycbcr_to_rgb_t
    from ivif_fusion.tasks import DetectorConfig, YoloDetector

    det = YoloDetector(DetectorConfig(imgsz=64)).freeze()
    vfn, _, _ = _setup()
    rsc = RSC(vfn.cfg, ["detection"], det.feature_channels)
    model = CustomizedFusion(vfn, rsc).train()
    with torch.no_grad():
        rsc.gamma.fill_(0.1)
    ir, y = _inputs(n=2, h=64, w=64)
    cbcr = torch.full((2, 2, 64, 64), 0.5)
    targets = [np.array([[0, 10, 12, 30, 50]], np.float32), np.array([[2, 30, 5, 60, 40]], np.float32)]
    with torch.no_grad():
        desc = pool_descriptor(det.features(ycbcr_to_rgb_t(torch.cat([vfn(ir, y), cbcr], 1))))
    loss = det.loss(ycbcr_to_rgb_t(torch.cat([model(ir, y, "detection", desc), cbcr], 1)), targets)
    loss.backward()
    for name, p in rsc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(p.grad is not None for p in det.model.parameters())


def test_vif_torch_matches_the_reported_metric_and_has_gradient():
    import numpy as np

    from ivif_fusion.losses import fidelity_guard, fusion_vif_t, guard_reference, vif_pair_t
    from ivif_fusion.metrics.fusion import vif, vif_pair

    rng = np.random.default_rng(3)
    ref = rng.uniform(0, 255, (64, 72))
    dist = np.clip(0.7 * ref + rng.normal(0, 20, ref.shape), 0, 255)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    assert vif_pair_t(t(ref), t(dist)).item() == pytest.approx(vif_pair(ref, dist), rel=1e-9)
    assert vif_pair_t(t(ref), t(ref)).item() == pytest.approx(1.0, rel=1e-9)
    ir, y = rng.uniform(0, 1, (64, 64)), rng.uniform(0, 1, (64, 64))
    f = 0.5 * (ir + y)
    got = fusion_vif_t(t(f), t(ir), t(y)).item()
    assert got == pytest.approx(vif(ir * 255, y * 255, f * 255), rel=1e-9)
    # the guard: zero inside the budget, the excess beyond it, gradient only when over budget
    gen = t(f).float()
    ref = guard_reference(gen, t(ir).float(), t(y).float())
    same, drops = fidelity_guard(gen.clone().requires_grad_(True), ref, t(ir).float(), t(y).float(), budget=0.03)
    assert same.item() == 0.0 and set(drops) == {"VIF", "Qabf"} and all(abs(d.item()) < 1e-5 for d in drops.values())
    noise = torch.from_numpy(rng.normal(0, 0.1, gen.shape)).float()
    worse = (gen + noise).requires_grad_(True)  # added noise: VIF falls far beyond 3 %
    vif_only = guard_reference(gen, t(ir).float(), t(y).float(), metrics=["VIF"])
    pen, drops = fidelity_guard(worse, vif_only, t(ir).float(), t(y).float(), budget=0.03)
    drop = drops["VIF"]
    assert pen.item() == pytest.approx(drop.item() - 0.03, rel=1e-5) and drop.item() > 0.1
    pen.backward()
    assert worse.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown guard metrics"):
        guard_reference(gen, gen, gen, metrics=["SSIM"])


class _Judge(TinyDetector):
    """A fold network that records the box classes of every batch it scores."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def loss(self, images, targets):
        self.seen.append({int(c) for t in targets for c in np.asarray(t)[:, 0]})
        return super().loss(images, targets)


def test_cross_fitting_judges_each_fold_with_the_network_that_never_saw_it(tmp_path, monkeypatch):
    import numpy as np

    import ivif_fusion.tasks as tasks_mod
    from ivif_fusion.config import load
    from ivif_fusion.train_config import TrainRSCConfig
    from ivif_fusion.training.rsc import LabelledPair, RSCTrainingError, train

    judges, paths = {}, []
    for k in range(2):
        p = tmp_path / f"fold{k}.pt"
        checkpoint.save(p, "detector", {}, {}, {"train_config": {"holdout_fold": f"{k}/2"}})
        judges[str(p)] = _Judge()
        paths.append(str(p))
    monkeypatch.setattr(tasks_mod, "load_task", lambda path, device="cpu": judges[str(path)])
    # frames 250 and 450 are fold 0 of 2 (blocks of 100 frames), 150 and 350 fold 1: their boxes say which
    fold = {"00250N": 0, "00450N": 0, "00150N": 1, "00350N": 1}
    rng = np.random.default_rng(0)
    pairs = [LabelledPair(n, rng.integers(0, 256, (48, 64), dtype=np.uint8),
                          rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                          np.array([[k, 8, 8, 24, 30]], np.float32)) for n, k in fold.items()]
    base = {"steps": 4, "crop": 32, "batch_size": 2, "threads": 1, "lr": 0.01, "descriptor": "embedding"}
    cfg = load(TrainRSCConfig, None, {**base, "out": str(tmp_path / "cf"),
                                      "tasks": [{"name": "detection", "weights": "unused", "cross_fit": paths}]})
    main = TinyDetector()
    path = train(cfg, progress=False, backbone=VFN(VFNConfig(depth=1)), adapters={"detection": main}, pairs=pairs)
    j0, j1 = judges[paths[0]], judges[paths[1]]
    # steps 0 and 2 draw fold 0, steps 1 and 3 fold 1; each judge scores generic + customized per step
    assert len(j0.seen) == 4 and len(j1.seen) == 4
    assert set().union(*j0.seen) == {0} and set().union(*j1.seen) == {1}
    assert checkpoint.load(path)["meta"]["cross_fit_folds"] == 2
    # a network trained on another fold is refused
    bad = {**base, "out": str(tmp_path / "bad"),
           "tasks": [{"name": "detection", "weights": "unused", "cross_fit": paths[::-1]}]}
    with pytest.raises(RSCTrainingError, match="holdout_fold '1/2', expected '0/2'"):
        train(load(TrainRSCConfig, None, bad), progress=False, backbone=VFN(VFNConfig(depth=1)),
              adapters={"detection": main}, pairs=pairs)


def test_qabf_torch_matches_the_reported_metric_and_has_gradient():
    from ivif_fusion.losses import qabf_t
    from ivif_fusion.metrics.fusion import qabf

    rng = np.random.default_rng(4)
    ir = rng.uniform(0, 255, (40, 48))
    vi = np.zeros((40, 48))
    vi[:, 20:] = 200.0  # one vertical edge, flat elsewhere (zero gradients exercised)
    f = np.clip(0.5 * ir + 0.5 * vi + rng.normal(0, 5, ir.shape), 0, 255)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    assert qabf_t(t(ir), t(vi), t(f)).item() == pytest.approx(qabf(ir, vi, f), abs=1e-6)
    x = t(f).clone().requires_grad_(True)
    qabf_t(t(ir), t(vi), x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_training_with_the_fidelity_guard_logs_each_drop(tmp_path):
    import csv

    from ivif_fusion.training.rsc import RSCTrainingError

    path, _ = _tiny_training(tmp_path, "g", crop=64, w_guard=10.0, guard_budget=0.0)
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert {"detection_vif_drop", "detection_qabf_drop"} <= set(rows[0])
    assert abs(float(rows[0]["detection_vif_drop"])) < 1e-5  # identity at step 1: nothing lost yet
    assert any(float(r["detection_qabf_drop"]) != 0.0 for r in rows[1:])
    with pytest.raises(RSCTrainingError, match="at least 41 pixels"):
        _tiny_training(tmp_path, "h", crop=32, w_guard=1.0)
