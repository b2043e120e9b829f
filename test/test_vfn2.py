"""VFN2: structure, cost, the base-image prior, ONNX parity, checkpoints, heads, VIFA, vfn RSC refusal, training."""

import numpy as np
import pytest
import torch

from ivif_fusion.bench.variants import VariantError, parse_variant
from ivif_fusion.config import runtime_defaults
from ivif_fusion.train_config import TrainFusionConfig
from ivif_fusion.errors import UserError
from ivif_fusion.models import checkpoint
from ivif_fusion.models.backbones import UnknownArchitecture, arch_of, backbone_from_config, build_backbone, conv_macs
from ivif_fusion.models.heads import MultiHeadFusion, make_head
from ivif_fusion.models.rsc import RSC, CustomizedFusion, RSCError, load_customized, save_rsc
from ivif_fusion.models.vfn import VFN, VFNConfig, count_parameters
from ivif_fusion.models.vfn2 import VFN2, VFN2Config
from ivif_fusion.models.vifa import build_student, forward_layer, load_vifa_model, save_vifa
from ivif_fusion.runtime.onnx_export import export_onnx, parity_check
from ivif_fusion.runtime.pipeline import build_fusion_graph

VFN_PARAMS = 27_192  # test_vfn.py derives it; repeated here so both nets' counts sit side by side


def vfn2_params(c: VFN2Config) -> int:
    """Parameter count written out layer by layer (plain blocks)."""
    s2, k = c.stride ** 2, c.detail
    stem = 2 * c.channels * s2 + c.channels
    blocks = c.depth * (2 * (c.channels * c.channels * 9 + c.channels) + 1)  # two convs and the ReZero gain
    up = c.channels * k * s2 * 9 + k * s2
    detail = (4 * k * 9 + k) + (c.detail_depth - 1) * (k * k * 9 + k)
    weight, head = k + 1, (k + 1) * 9 + 1
    return stem + blocks + up + detail + weight + head


def randomized(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    """All weights random (an untrained VFN2 is the base image alone, which would hide wiring errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():  # weights with std 1 / sqrt(fan-in) keep activations of order 1
            fan_in = p[0].numel() if p.ndim > 1 else 100
            p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return m.eval()


def test_parameter_counts_of_both_nets():
    assert count_parameters(VFN()) == VFN_PARAMS
    # default VFN2: stride 4, 96 channels, depth 8, detail 16 in two full-resolution convs
    assert vfn2_params(VFN2Config()) == count_parameters(VFN2()) == 1_556_339
    small = VFN2Config(stride=2, channels=32, depth=4, detail=8, detail_depth=2)
    assert count_parameters(VFN2(small)) == vfn2_params(small)


def test_conv_cost_hand_count():
    # stride 2, 4 channels, 1 block, 2 detail maps, on a 4x4 input (low resolution 2x2):
    # stem 16 outputs x 8 + block 2 x (16 x 36) + up 32 x 36 + detail 32 x 36 + weight 16 x 2 + head 16 x 27
    m = VFN2(VFN2Config(stride=2, channels=4, depth=1, detail=2, detail_depth=1))
    assert conv_macs(m, 4, 4) == 128 + 1152 + 1152 + 1152 + 32 + 432 == 4048
    # the VFN has no stride, so its cost per pixel is constant: 16.5 GFLOP at 640x480
    per_pixel = conv_macs(VFN(), 8, 8) / 64
    assert 2 * per_pixel * 640 * 480 / 1e9 == pytest.approx(16.5, abs=0.1)


@pytest.mark.parametrize("h,w", [(16, 16), (37, 53), (3, 5)])
def test_any_size_and_output_range(h, w):
    m = randomized(VFN2(), 0)
    ir, y = torch.rand(2, 1, h, w), torch.rand(2, 1, h, w)
    out = m(ir, y)
    assert out.shape == (2, 1, h, w) and out.min() >= 0 and out.max() <= 1
    shared = m.shared_features(ir, y)
    assert shared.shape == (2, m.shared_channels, h, w) == (2, 17, h, w)
    torch.testing.assert_close(m.decoder(shared), out)


def test_padding_is_replicate_and_crop_is_aligned():
    """A 37x53 input gives what its replicate-padded 40x56 version gives, away from the padded edges.

    The context path sees the same padded input either way; only the full-resolution 3x3 convs
    (Sobel, detail conv, head: 3 pixels) near the right/bottom edge see different neighbours.
    """
    m = randomized(VFN2(), 1)
    ir, y = torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53)
    pad = torch.nn.functional.pad
    big = m(pad(ir, (0, 3, 0, 3), mode="replicate"), pad(y, (0, 3, 0, 3), mode="replicate"))
    torch.testing.assert_close(m(ir, y)[..., :34, :50], big[..., :34, :50], rtol=0, atol=1e-6)


def test_untrained_output_is_the_base_image_prior():
    """The generic head starts as the identity on the base image w * thermal + (1 - w) * Y."""
    m = VFN2().eval()
    ir, y = torch.full((1, 1, 8, 12), 0.2), torch.full((1, 1, 8, 12), 0.6)
    # the weight conv starts at zero: w = 0.5, the mean of the two
    torch.testing.assert_close(m(ir, y), torch.full_like(ir, 0.4), rtol=0, atol=1e-6)
    with torch.no_grad():
        m.decoder.weight.bias.fill_(30.0)  # w = sigmoid(30) ~ 1: select the thermal image
    torch.testing.assert_close(m(ir, y), ir, rtol=0, atol=1e-6)


def test_bad_inputs_raise():
    m = VFN2()
    with pytest.raises(ValueError, match="1 channel"):
        m(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        m(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="block"):
        VFN2Config(block="dense")


def test_onnx_parity_of_v2_with_heads_at_sizes_not_divisible_by_the_stride(tmp_path):
    bb = randomized(VFN2(), 2)
    graph = MultiHeadFusion(bb, {"detection": make_head(bb.shared_channels)}).eval()
    res = export_onnx(graph, tmp_path, verify=True)  # raises above 1e-4
    parity = {**res.parity, **parity_check(graph, res.path, [(1, 37, 53), (2, 61, 83), (1, 3, 5)])}
    assert set(parity) == {"1x96x128", "2x120x72", "1x37x53", "2x61x83", "1x3x5"}
    assert max(parity.values()) <= 1e-4


def test_checkpoint_round_trip_builds_the_right_class(tmp_path):
    m = randomized(VFN2(VFN2Config(channels=16, depth=2)), 3)
    p = checkpoint.save(tmp_path / "v2.pt", "vfn", m.cfg.to_dict(), m.state_dict())
    assert checkpoint.load(p)["config"]["arch"] == "vfn2"
    m2 = checkpoint.load_backbone(p)
    assert isinstance(m2, VFN2) and m2.cfg == m.cfg and not m2.training
    x = torch.rand(1, 1, 13, 21)
    torch.testing.assert_close(m(x, x), m2(x, x), rtol=0, atol=0)
    # configs written before the choice existed have no 'arch': they are VFN
    old = checkpoint.save(tmp_path / "v1.pt", "vfn", VFNConfig(depth=1).to_dict(), VFN(VFNConfig(depth=1)).state_dict())
    assert isinstance(checkpoint.load_vfn(old), VFN)
    bad = checkpoint.save(tmp_path / "x.pt", "vfn", {"arch": "vfn9"}, {})
    with pytest.raises(checkpoint.CheckpointError, match="unknown backbone architecture 'vfn9'"):
        checkpoint.load_backbone(bad)


def test_registry_builds_and_names_architectures():
    assert arch_of(build_backbone("vfn2", depth=2)) == "vfn2" and build_backbone("vfn2", depth=2).cfg.depth == 2
    assert arch_of(build_backbone()) == "vfn"
    assert isinstance(backbone_from_config(VFN2Config(stride=2).to_dict()), VFN2)
    with pytest.raises(UnknownArchitecture, match="no config key"):
        build_backbone("vfn2", width=8)
    with pytest.raises(UserError):
        build_backbone("resnet")


def test_multi_head_fusion_and_pipeline_graph_with_v2(tmp_path):
    bb = randomized(VFN2(), 4)
    graph = MultiHeadFusion(bb, {"detection": make_head(bb.shared_channels)}).eval()
    ir, y = torch.rand(1, 1, 20, 30), torch.rand(1, 1, 20, 30)
    generic, det = graph(ir, y)
    torch.testing.assert_close(generic, bb(ir, y))
    assert det.shape == generic.shape and not torch.equal(det, generic)
    p = checkpoint.save(tmp_path / "v2.pt", "vfn", bb.cfg.to_dict(), bb.state_dict())
    fusion = build_fusion_graph(runtime_defaults({"pipeline.backbone_weights": str(p)}).pipeline)
    assert isinstance(fusion.graph.backbone, VFN2)
    torch.testing.assert_close(fusion.graph(ir, y)[0], generic)


def test_vifa_student_on_v2_round_trips(tmp_path):
    backbone = randomized(VFN2(VFN2Config(channels=16, depth=1, detail=8)), 5)
    student = build_student(backbone, ["detection", "segmentation"]).eval()
    ir, y = torch.rand(1, 1, 12, 16), torch.rand(1, 1, 12, 16)
    outs = student(ir, y)
    torch.testing.assert_close(outs[0], student.backbone(ir, y))  # heads start as the generic head
    feat, shared = forward_layer(student.backbone, ir, y, "shared")
    assert feat is shared and shared.shape[1] == 9
    with pytest.raises(ValueError, match="layer 'fusion' exists in the vfn backbone only"):
        forward_layer(student.backbone, ir, y, "fusion")
    p = save_vifa(tmp_path / "vifa.pt", student, layer="shared")
    back = load_vifa_model(p, ["detection", "segmentation"])
    assert isinstance(back.backbone, VFN2) and checkpoint.load(p)["config"]["head"]["in_ch"] == 9
    for a, b in zip(outs, back(ir, y)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_vfn_rsc_refuses_v2_with_a_user_error(tmp_path):
    # vfn2 is customized by ContextRSC (test_rsc_context.py); the per-modality RSC refuses it
    v2 = VFN2()
    for attempt in (lambda: RSC(v2.cfg), lambda: RSC(v2.cfg.to_dict()), lambda: CustomizedFusion(v2, RSC())):
        with pytest.raises(RSCError, match="'vfn2', which mixes thermal and visible at its input"):
            attempt()
    p = save_rsc(tmp_path / "rsc.pt", RSC(), VFNConfig())
    with pytest.raises(UserError, match="customizes the 'vfn' backbone; the loaded backbone is 'vfn2'"):
        load_customized(p, v2)


def test_bench_variant_names():
    assert parse_variant("vfn2") == ("vfn2", {})
    assert parse_variant("vfn2:stride=2, channels=32,block=separable") == (
        "vfn2", {"stride": 2, "channels": 32, "block": "separable"})
    with pytest.raises(VariantError, match="KEY=VALUE"):
        parse_variant("vfn2:stride")


def test_training_with_arch_vfn2_saves_a_vfn2_checkpoint(tmp_path):
    from ivif_fusion.losses import fusion_loss
    from ivif_fusion.training.fusion import train

    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        ir = np.zeros((40, 48), np.uint8)
        ir[10:25, 12:20] = 230  # a hot object
        y = (rng.random((40, 48)) * 60 + np.linspace(0, 150, 48)[None]).astype(np.uint8)
        images.append(np.stack([ir, y]))
    cfg = TrainFusionConfig(arch="vfn2", depth=1, crop=24, batch_size=4, samples_per_image=2, epochs=12, lr=3e-3,
                            seed=3, threads=1, out=str(tmp_path))
    batch = torch.stack([torch.from_numpy(i).float() / 255 for i in images])
    torch.manual_seed(3)
    before = fusion_loss(VFN2(VFN2Config(depth=1))(batch[:, :1], batch[:, 1:]), batch[:, :1], batch[:, 1:]).item()
    m = checkpoint.load_backbone(train(cfg, progress=False, images=images))
    assert isinstance(m, VFN2) and m.cfg.depth == 1
    with torch.no_grad():
        after = fusion_loss(m(batch[:, :1], batch[:, 1:]), batch[:, :1], batch[:, 1:]).item()
    assert after < 0.8 * before
