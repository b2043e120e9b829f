"""Context RSC (vfn2): exact identity at init on a real pair, training, ONNX parity, arch checks, pipeline."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ivif_fusion.colour import luminance
from ivif_fusion.errors import UserError
from ivif_fusion.models import checkpoint
from ivif_fusion.models.rsc import (RSC, ContextCustomizedFusion, ContextRSC, RSCError, customized_fusion,
                                    load_customized, make_rsc, save_rsc)
from ivif_fusion.models.vfn import VFN, VFNConfig
from ivif_fusion.models.vfn2 import VFN2, VFN2Config

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped_vfn2() -> VFN2:
    path = ROOT / "models" / "vfn2_msrs.pt"
    if not path.is_file():
        pytest.skip("models/vfn2_msrs.pt not shipped")
    return checkpoint.load_backbone(path).requires_grad_(False)


def _trained_like(v2: VFN2, tasks=("detection", "segmentation"), seed=0) -> ContextCustomizedFusion:
    torch.manual_seed(seed)
    rsc = make_rsc(v2.cfg, list(tasks), 12)
    with torch.no_grad():
        rsc.gamma.normal_(0, 0.5)  # a trained-like, non-zero residual
    return customized_fusion(v2, rsc).eval()


def test_untrained_context_rsc_reproduces_vfn2_exactly_on_an_msrs_pair(msrs_root, shipped_vfn2):
    from ivif_fusion.data.paired import PairedFolder

    s = PairedFolder(msrs_root, names=["00004N.png"])[0]
    thermal = torch.from_numpy(s.thermal.astype(np.float32))[None, None]
    y = torch.from_numpy(luminance(s.visible).astype(np.float32))[None, None]
    torch.manual_seed(0)
    rsc = make_rsc(shipped_vfn2.cfg, ["detection", "segmentation"], 12)
    assert isinstance(rsc, ContextRSC) and rsc.cfg.arch == "vfn2" and rsc.cfg.width == 96
    model = customized_fusion(shipped_vfn2, rsc)
    with torch.no_grad():
        ref = shipped_vfn2(thermal, y)
        model.train()  # Gumbel noise on the selection changes nothing while gamma is zero
        assert torch.equal(model(thermal, y, "detection", torch.randn(1, 12)), ref)
        outs = model.eval().forward_tasks(thermal, y, {"detection": None, "segmentation": None})
    for out in outs.values():
        assert torch.equal(out, ref)
    assert ref.shape == (1, 1, 480, 640) and 0.05 < ref.std() < 0.5  # a real image, not a constant
    np.testing.assert_array_equal(model.fuse_numpy(thermal[0, 0].numpy(), y[0, 0].numpy(), "detection"),
                                  ref[0, 0].numpy())


def test_customization_is_per_task_deterministic_and_batched(shipped_vfn2):
    model = _trained_like(shipped_vfn2)
    g = torch.Generator().manual_seed(1)
    thermal, y = torch.rand(2, 1, 37, 50, generator=g), torch.rand(2, 1, 37, 50, generator=g)
    with torch.no_grad():
        ref = shipped_vfn2(thermal, y)
        det, seg = model(thermal, y, "detection"), model(thermal, y, "segmentation")
        assert torch.equal(det, model(thermal, y, "detection"))  # eval: no noise
        assert (det - ref).abs().max() > 1e-3 and (det - seg).abs().max() > 1e-5
        # each sample is customized from its own image descriptor, as if run alone
        torch.testing.assert_close(model(thermal[1:], y[1:], "detection"), det[1:], rtol=0, atol=1e-5)
    with pytest.raises(RSCError, match="no task 'depth'"):
        model(thermal, y, "depth")
    # up is linear: customizing up(z) per task equals running the backbone's tail on the customized z'
    with torch.no_grad():
        z, detail = shipped_vfn2.encode_context(thermal, y)
        direct = shipped_vfn2.decoder(shipped_vfn2.decode_context(model.rsc(z, "detection"), detail, thermal, y))
    torch.testing.assert_close(det, direct, rtol=0, atol=1e-5)
    assert (model.rsc(z, "detection") - z).abs().max() > 1e-3


def test_training_steps_change_the_output_with_finite_losses(tmp_path, shipped_vfn2):
    import csv

    from test_rsc import TinyDetector

    from ivif_fusion.config import load
    from ivif_fusion.train_config import TrainRSCConfig
    from ivif_fusion.training.rsc import LabelledPair, train

    rng = np.random.default_rng(0)
    pairs = [LabelledPair(f"p{i}", rng.integers(0, 256, (48, 64), dtype=np.uint8),
                          rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                          np.array([[0, 8, 8, 24, 30]], np.float32)) for i in range(3)]
    cfg = load(TrainRSCConfig, None, {"steps": 3, "crop": 32, "batch_size": 2, "threads": 1, "lr": 0.01,
                                      "out": str(tmp_path / "r")})
    torch.manual_seed(0)
    path = train(cfg, progress=False, backbone=shipped_vfn2, adapters={"detection": TinyDetector()}, pairs=pairs)
    ckpt = checkpoint.load(path, "rsc")
    assert ckpt["config"]["rsc"]["arch"] == "vfn2" and ckpt["config"]["backbone"] == shipped_vfn2.cfg.to_dict()
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert len(rows) == 3 and all(np.isfinite(float(r["detection_total"])) for r in rows)
    model = load_customized(path, shipped_vfn2)
    assert isinstance(model, ContextCustomizedFusion) and model.rsc.gamma.abs().sum() > 0
    thermal, y = torch.from_numpy(pairs[0].thermal / 255.0).float()[None, None], torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        assert (model(thermal, y, "detection") - shipped_vfn2(thermal, y)).abs().max() > 1e-6


def test_onnx_export_of_the_vfn2_rsc_graph_matches_torch(tmp_path, shipped_vfn2):
    import onnxruntime as ort

    from ivif_fusion.runtime.onnx_export import export_rsc_onnx

    model = _trained_like(shipped_vfn2)
    res = export_rsc_onnx(model, tmp_path)
    assert res.head_names == ["detection", "segmentation"]
    assert set(res.parity) == {"1x96x128", "2x120x72"} and max(res.parity.values()) <= 1e-4
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    g = np.random.default_rng(2)
    thermal, y = g.random((3, 1, 52, 76), dtype=np.float32), g.random((3, 1, 52, 76), dtype=np.float32)
    det, seg = sess.run(None, {"ir": thermal, "y": y})
    with torch.no_grad():
        ref = model.forward_tasks(torch.from_numpy(thermal), torch.from_numpy(y), {"detection": None, "segmentation": None})
    assert np.abs(det - ref["detection"].numpy()).max() <= 1e-4
    assert np.abs(seg - ref["segmentation"].numpy()).max() <= 1e-4
    assert np.abs(det - seg).max() > 1e-6  # two distinct task outputs, not one duplicated
    v1 = VFN(VFNConfig(depth=1))
    with pytest.raises(UserError, match="supports the vfn2"):  # the vfn RSC's batch-grouped convs do not export
        export_rsc_onnx(customized_fusion(v1, RSC(v1.cfg)), tmp_path / "v1")


def test_a_mismatched_backbone_is_refused_with_a_user_error(tmp_path):
    v1, v2 = VFN(VFNConfig(depth=1)), VFN2(VFN2Config(channels=16, depth=1))
    p1 = save_rsc(tmp_path / "v1.pt", RSC(v1.cfg), v1.cfg)
    p2 = save_rsc(tmp_path / "v2.pt", make_rsc(v2.cfg), v2.cfg)
    assert checkpoint.load(p1)["config"]["rsc"]["arch"] == "vfn"
    assert checkpoint.load(p2)["config"]["rsc"]["arch"] == "vfn2"
    with pytest.raises(UserError, match="customizes the 'vfn' backbone; the loaded backbone is 'vfn2'"):
        load_customized(p1, v2)
    with pytest.raises(UserError, match="customizes the 'vfn2' backbone; the loaded backbone is 'vfn'"):
        load_customized(p2, v1)
    with pytest.raises(checkpoint.CheckpointError, match="backbone config"):
        load_customized(p2, VFN2(VFN2Config(channels=16, depth=2)))
    with pytest.raises(RSCError):
        customized_fusion(v1, make_rsc(v2.cfg))
    with pytest.raises(RSCError, match="ContextRSC"):
        RSC(v2.cfg)
    with pytest.raises(RSCError, match="width"):
        ContextCustomizedFusion(v2, ContextRSC(VFN2Config(channels=8), rank=4))
    # a checkpoint written before the arch field (no 'arch' in its RSC config) is a vfn RSC
    ckpt = checkpoint.load(p1)
    legacy = {k: v for k, v in ckpt["config"]["rsc"].items() if k != "arch"}
    checkpoint.save(tmp_path / "old.pt", "rsc", {"rsc": legacy, "backbone": v1.cfg.to_dict()}, ckpt["state_dict"])
    assert isinstance(load_customized(tmp_path / "old.pt", v1).rsc, RSC)


def test_pipeline_runs_a_vfn2_rsc_task(tmp_path, shipped_vfn2):
    from ivif_fusion.config import load_runtime
    from ivif_fusion.runtime.pipeline import Pipeline

    model = _trained_like(shipped_vfn2, tasks=("fusion_rsc",))
    path = save_rsc(tmp_path / "rsc.pt", model.rsc, shipped_vfn2.cfg)
    tasks = [{"name": "fusion", "kind": "fusion"},
             {"name": "fusion_rsc", "kind": "fusion", "customization": "rsc"}]
    cfg = load_runtime(None, {"pipeline": {"backbone_weights": "models/vfn2_msrs.pt", "rsc_weights": str(path),
                                           "tasks": tasks, "backends": ["torch"], "threads": 1}})
    pipe = Pipeline.from_config(cfg)
    g = np.random.default_rng(3)
    thermal, visible = g.random((40, 56), dtype=np.float32), g.random((40, 56, 3), dtype=np.float32)
    out, timings = pipe.run_arrays(thermal, visible)
    assert "rsc:fusion_rsc" in timings
    generic, custom = out["fusion"].fused_rgb.astype(int), out["fusion_rsc"].fused_rgb.astype(int)
    assert np.abs(generic - custom).max() > 0


@pytest.mark.parametrize("top_k", [0, 4])
def test_every_context_rsc_parameter_gets_gradient(shipped_vfn2, top_k):
    torch.manual_seed(0)
    rsc = make_rsc(shipped_vfn2.cfg, ["detection", "segmentation"], 12, top_k=top_k)
    model = customized_fusion(shipped_vfn2, rsc).train()
    with torch.no_grad():
        rsc.gamma.fill_(0.1)
    g = torch.Generator().manual_seed(4)
    thermal, y = torch.rand(2, 1, 32, 40, generator=g), torch.rand(2, 1, 32, 40, generator=g)
    target = torch.rand(2, 1, 32, 40, generator=g)
    torch.nn.functional.mse_loss(model(thermal, y, "detection", torch.randn(2, 12, generator=g)), target).backward()
    for name, p in rsc.named_parameters():
        if name.startswith("desc_proj.segmentation"):
            assert p.grad is None or p.grad.abs().sum() == 0, name
        elif name == "task_embed":
            assert p.grad[0].abs().sum() > 0 and torch.all(p.grad[1] == 0)
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"parameter {name} receives no gradient"
    if top_k:  # straight-through: every basis' key learns to be selected, not only the selected ones'
        assert (rsc.keys.grad.abs().sum(1) > 0).all()


def test_cosine_selection_stays_bounded_and_per_task_where_dot_product_saturates():
    """A grown query saturated the dot-product softmax into one basis per branch, the same for every task (the
    shipped two-task 511-step run gave both tasks one identical image); cosine logits stay within +-sqrt(query_dim)."""
    from ivif_fusion.models.rsc_core import RSCConfig, selection_logits

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(16, 16, generator=g)
    q = torch.randn(2, 4, 16, generator=g)
    big = q * 1e4
    cos = RSCConfig(selection="cosine")
    dot = RSCConfig(selection="dot")
    # cosine: scale-free in the query, bounded by sqrt(16) = 4; by hand for one query and key
    torch.testing.assert_close(selection_logits(big, keys, cos), selection_logits(q, keys, cos))
    assert selection_logits(big, keys, cos).abs().max() <= 4.0 + 1e-5
    by_hand = 4.0 * float(q[0, 0] @ keys[3]) / float(q[0, 0].norm() * keys[3].norm())
    assert abs(float(selection_logits(q, keys, cos)[0, 0, 3]) - by_hand) < 1e-5
    torch.testing.assert_close(selection_logits(q, keys, dot), q @ keys.t() / 4.0)
    soft = torch.softmax(selection_logits(big, keys, dot), -1)
    assert torch.all(soft.max(-1).values > 0.999)  # saturated: one basis per branch
    # a fresh two-task context RSC on huge context maps still selects differently per task
    torch.manual_seed(0)
    rsc = make_rsc(VFN2Config(), ["detection", "segmentation"], 12)
    z = torch.randn(1, rsc.cfg.width, 6, 8, generator=g) * 1e3
    with torch.no_grad():
        w_det, w_seg = rsc.selection(z, "detection"), rsc.selection(z, "segmentation")
    assert w_det.max() < 0.999 and (w_det - w_seg).abs().max() > 1e-3


def test_checkpoints_without_the_selection_key_keep_dot_product_selection():
    from ivif_fusion.models.rsc_core import RSCConfig

    old = RSCConfig(selection="dot").to_dict()
    del old["selection"]
    assert RSCConfig.from_dict(old).selection == "dot"
    assert RSCConfig.from_dict({**old, "selection": "cosine"}).selection == "cosine"
    with pytest.raises(ValueError, match="selection must be one of"):
        RSCConfig.from_dict({**old, "selection": "softmax"})
    assert RSCConfig().selection == "cosine"  # new RSCs
