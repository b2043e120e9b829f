"""`ivif replay` of a bag recorded across a restart: the stamps start over and pairing resumes."""

import numpy as np

from ivif_fusion.config import runtime_defaults
from ivif_fusion.io import bags
from ivif_fusion.replay import replay

H, W = 32, 48


def _header(stamp_ns: int, frame_id: str):  # noqa: ANN202
    from ivif_fusion.io.messages import make_header

    types = bags.typestore().types
    return make_header(types[bags.HEADER], types[bags.TIME], stamp_ns, frame_id)


def _write(path, stamps_s: list[float]) -> None:  # noqa: ANN001
    from ivif_fusion.io.messages import array_to_image_msg

    ts = bags.typestore().types
    log = 10**9
    with bags.BagWriter(path, "sqlite3") as w:
        for k, t_s in enumerate(stamps_s):
            t = int(round(t_s * 1e9))
            log += 100_000_000   # the recorder's clock keeps going; the cameras' stamps jump back
            w.write(bags.THERMAL_TOPIC, log, array_to_image_msg(ts[bags.IMAGE], _header(t, "th"),
                                                                np.full((H, W), 60 + k, np.uint8), "mono8"))
            w.write(bags.RGB_TOPIC, log + 1, array_to_image_msg(ts[bags.IMAGE], _header(t, "vi"),
                                                                np.full((H, W, 3), 90, np.uint8), "rgb8"))


def test_replay_resumes_after_stamps_restart(tmp_path, random_vfn_ckpt):
    # 6 pairs at 100..100.5 s, then the cameras restart: 6 pairs at 3..3.5 s (97 s back).
    stamps = [100 + k / 10 for k in range(6)] + [3 + k / 10 for k in range(6)]
    _write(tmp_path / "b", stamps)
    cfg = runtime_defaults({"pipeline.backbone_weights": str(random_vfn_ckpt), "replay.metrics_pairs": 0,
                            "replay.sample_frames": 0, "sync.mode": "exact"})
    s = replay(tmp_path / "b", cfg, tmp_path / "out", progress=False)
    # Exact pairs of equal stamps go out at once: nothing is held at the jump, all 12 pairs fuse.
    assert s.pairs_fused == 12
    for st in ("thermal", "visible"):
        assert s.accounting[st]["received"] == 12 and s.accounting[st]["dropped"] == {}
        assert s.accounting[st]["balanced"]
    # With sync.reject_late (late stamps dropped, the robot opt-in), the reset is what keeps pairing alive:
    # without it every frame after the restart is out of order and only the first 6 pairs fuse.
    def run(jump_s: float, out: str):  # noqa: ANN202
        c = runtime_defaults({"pipeline.backbone_weights": str(random_vfn_ckpt), "replay.metrics_pairs": 0,
                              "replay.sample_frames": 0, "sync.mode": "exact", "sync.reject_late": True,
                              "time_jump_s": jump_s})
        return replay(tmp_path / "b", c, tmp_path / out, progress=False)

    on, off = run(1.0, "on"), run(0.0, "off")
    assert on.pairs_fused == 12 and on.accounting["thermal"]["dropped"] == {}
    assert off.pairs_fused == 6 and off.accounting["thermal"]["dropped"] == {"out_of_order": 6}


def test_replay_counts_frames_held_at_the_jump(tmp_path, random_vfn_ckpt):
    # Thermal at 100.0 waits for an RGB partner when the restart comes: dropped as time_jump, then 3 pairs.
    from ivif_fusion.io.messages import array_to_image_msg

    ts = bags.typestore().types
    img = {"t": np.full((H, W), 60, np.uint8), "v": np.full((H, W, 3), 90, np.uint8)}
    with bags.BagWriter(tmp_path / "h", "sqlite3") as w:
        log = 10**9
        w.write(bags.THERMAL_TOPIC, log, array_to_image_msg(ts[bags.IMAGE], _header(100 * 10**9, "th"),
                                                            img["t"], "mono8"))
        for k in range(3):
            t = (3 + k) * 10**9
            log += 100_000_000
            w.write(bags.THERMAL_TOPIC, log, array_to_image_msg(ts[bags.IMAGE], _header(t, "th"),
                                                                img["t"], "mono8"))
            w.write(bags.RGB_TOPIC, log + 1, array_to_image_msg(ts[bags.IMAGE], _header(t, "vi"),
                                                                img["v"], "rgb8"))
    cfg = runtime_defaults({"pipeline.backbone_weights": str(random_vfn_ckpt), "replay.metrics_pairs": 0,
                            "replay.sample_frames": 0, "sync.mode": "exact"})
    s = replay(tmp_path / "h", cfg, tmp_path / "out", progress=False)
    assert s.pairs_fused == 3
    assert s.accounting["thermal"]["dropped"] == {"time_jump": 1} and s.accounting["thermal"]["balanced"]
    assert s.accounting["visible"]["dropped"] == {} and s.accounting["visible"]["balanced"]
