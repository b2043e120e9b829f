"""RSC against a detector and a segmenter together: masks travel with the crops, CAGrad's update on a real
two-task step equals the two-task closed form, c = 0 is plain averaging/summing, a missing masks_dir is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from ivif_fusion.errors import UserError
from mini_data import mini_msrs

from ivif_fusion.paths import resolve
from ivif_fusion.training.rsc import LabelledPair, sample_batch

TRAIN_PAIRS = ("00131D", "00139D")  # MSRS train range: persons and cars


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pattern_pair(h: int, w: int) -> LabelledPair:
    """Thermal = x + w*y (every pixel's value names its position, h*w <= 256); a car box at x 2..5, y 1..3
    filled with 1 in the mask, 255 (ignore) on column 6, 0 elsewhere; Y and CbCr copies of the thermal."""
    yy, xx = np.mgrid[0:h, 0:w]
    thermal = (xx + w * yy).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[1:4, 2:6] = 1
    mask[:, 6] = 255
    boxes = np.array([[0, 2, 1, 6, 4]], np.float32)  # class 0 in box terms, pixels x 2..5, y 1..3
    return LabelledPair("p", thermal, np.stack([thermal] * 3, -1), boxes, mask)


def test_masks_are_cropped_and_flipped_exactly_as_the_images():
    pair = _pattern_pair(12, 16)
    flips = 0
    for step in range(12):
        b = sample_batch([pair], size=8, batch=2, seed=3, step=step, min_visible=0.0)
        assert b["masks"].dtype == torch.uint8 and b["masks"].shape == (2, 8, 8)
        for i in range(2):
            ir = (b["ir"][i, 0] * 255).round().to(torch.int64).numpy()
            # the crop's corner values say where it was taken and whether it was mirrored
            flipped = ir[0, 1] == ir[0, 0] - 1
            x_left = ir[0, -1] if flipped else ir[0, 0]
            y0, x0 = divmod(int(x_left), 16)
            expected = pair.mask[y0:y0 + 8, x0:x0 + 8]
            np.testing.assert_array_equal(b["masks"][i].numpy(), expected[:, ::-1] if flipped else expected)
            flips += int(flipped)
            # the cropped box covers exactly the mask's car pixels (crop_boxes drops slivers under 2 px)
            cars = np.argwhere(b["masks"][i].numpy() == 1)
            extent = (cars[:, 1].min(), cars[:, 0].min(), cars[:, 1].max() + 1, cars[:, 0].max() + 1) if len(cars) else ()
            if len(b["targets"][i]):
                assert extent == tuple(b["targets"][i][0, 1:])
            else:
                assert not len(cars) or min(extent[2] - extent[0], extent[3] - extent[1]) < 2
    assert 0 < flips < 24  # both orientations were drawn
    # a pair smaller than the crop: reflected image, mask padded with ignore
    b = sample_batch([_pattern_pair(6, 7)], size=8, batch=1, seed=0, step=0)
    m = b["masks"][0].numpy()
    assert (m[6:] == 255).all() and ((m[:, 7] if m[0, 0] != 255 else m[:, 0]) == 255).all()
    # masks draw nothing from the generator: the images and boxes of a batch do not depend on them
    bare = LabelledPair(pair.name, pair.thermal, pair.ycc, pair.boxes)
    a, c = sample_batch([pair], 8, 3, 1, 5), sample_batch([bare], 8, 3, 1, 5)
    assert c["masks"] is None and torch.equal(a["ir"], c["ir"]) and torch.equal(a["cbcr"], c["cbcr"])
    assert all(np.array_equal(x, z) for x, z in zip(a["targets"], c["targets"], strict=True))


@pytest.fixture(scope="module")
def two_task_data(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, masks folder): two real MSRS pairs with the pseudo-masks `ivif data masks` writes for them."""
    from ivif_fusion.cli import main

    tmp = tmp_path_factory.mktemp("two_tasks")
    root = mini_msrs(tmp, TRAIN_PAIRS)
    masks = tmp / "masks"
    assert main(["data", "masks", "--dataset", str(root / "MSRS"), "--out", str(masks), "--no-progress"]) == 0
    return root, masks


def _closed_form(g1: torch.Tensor, g2: torch.Tensor, c: float) -> tuple[torch.Tensor, float]:
    """CAGrad's two-task update, rescaled by 1 + c^2, from the closed form of its 1-D dual (test_cagrad)."""
    from test_cagrad import closed_form_update, closed_form_w

    if c == 0:
        return (g1.double() + g2.double()) / 2, 0.5
    return closed_form_update(g1, g2, c) / (1 + c * c), closed_form_w(g1, g2, c)


@pytest.mark.parametrize("c", [0.5, 0.0])
def test_a_two_task_step_on_real_crops_writes_the_cagrad_closed_form(tmp_path, monkeypatch, two_task_data,
                                                                     random_segmenter_ckpt, c):
    from ivif_fusion import cagrad
    from ivif_fusion.config import load
    from ivif_fusion.train_config import TrainRSCConfig
    from ivif_fusion.training.rsc import train

    det = resolve("models/yolo_det_msrs.pt")
    if not det.is_file():
        pytest.skip("models/yolo_det_msrs.pt not shipped")
    root, masks = two_task_data
    seen = []
    original = cagrad.CAGrad.backward

    def recording_backward(self, losses):  # noqa: ANN001, ANN202
        # each task's gradient, taken here independently of CAGrad, then what CAGrad writes into .grad
        def flat_grad(loss):  # noqa: ANN001, ANN202 - zeros for parameters a loss does not reach
            gs = torch.autograd.grad(loss, self.params, retain_graph=True, allow_unused=True)
            return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(self.params, gs)])

        grads = [flat_grad(loss) for loss in losses]
        sum_grad = flat_grad(losses[0] + losses[1])
        info = original(self, losses)
        seen.append((grads, sum_grad, torch.cat([p.grad.reshape(-1) for p in self.params]), info))
        return info

    monkeypatch.setattr(cagrad.CAGrad, "backward", recording_backward)
    cfg = load(TrainRSCConfig, None, {
        "data_root": str(root), "masks_dir": str(masks), "backbone": "models/vfn2_msrs.pt", "steps": 2, "crop": 64,
        "batch_size": 2, "threads": 1, "lr": 0.01, "cagrad_c": c, "descriptor_dropout": 0.0,
        "tasks": [{"name": "detection", "weights": str(det)}, {"name": "segmentation", "weights": str(random_segmenter_ckpt)}],
        "out": str(tmp_path / "run")})
    path = train(cfg, progress=False)
    assert len(seen) == 2
    # step 2: after one Adam step every RSC parameter gets gradient from both tasks
    (g_det, g_seg), sum_grad, written, info = seen[-1]
    assert g_det.norm() > 0 and g_seg.norm() > 0
    expected, w = _closed_form(g_det, g_seg, c)
    torch.testing.assert_close(written.double(), expected, rtol=1e-5, atol=1e-7 * float(expected.abs().max()))
    cos = float(g_det @ g_seg / (g_det.norm() * g_seg.norm()))
    assert info["min_task_cos"] == pytest.approx(cos, abs=1e-6)
    assert info["weights"][0] == pytest.approx(w, abs=1e-6)
    mean = (g_det + g_seg).double() / 2
    if c > 0:  # CAGrad really changes the update here: not the plain average's direction
        assert float(written.double() @ mean / (written.double().norm() * mean.norm())) < 0.999
    if c == 0:  # plain averaging: half the gradient of the plain sum of the two objectives
        torch.testing.assert_close(written, sum_grad / 2, rtol=1e-5, atol=1e-9)
        assert info["coefs"] == pytest.approx([0.5, 0.5])
    rows = list(csv.DictReader(open(path.parent / "log.csv")))
    assert float(rows[-1]["detection_cagrad_weight"]) == pytest.approx(w, abs=1e-5)
    assert float(rows[-1]["min_task_cos"]) == pytest.approx(cos, abs=1e-4)
    assert float(rows[-1]["segmentation_gradient_norm"]) == pytest.approx(float(g_seg.norm()), rel=1e-4)
    # step 1 starts from the generic fusion: customized and reference losses agree for both tasks
    for t in ("detection", "segmentation"):
        assert float(rows[0][f"{t}_task"]) == pytest.approx(float(rows[0][f"{t}_ref"]), rel=1e-5)
        assert np.isfinite(float(rows[-1][f"{t}_total"]))


def test_a_segmentation_task_without_masks_dir_is_refused(tmp_path, capsys, random_segmenter_ckpt):
    from ivif_fusion.cli import main
    from ivif_fusion.config import load
    from ivif_fusion.train_config import TrainRSCConfig
    from ivif_fusion.training.rsc import train

    tasks = [{"name": "segmentation", "weights": str(random_segmenter_ckpt)}]
    cfg = load(TrainRSCConfig, None, {"tasks": tasks, "threads": 1, "out": str(tmp_path / "a")})
    with pytest.raises(UserError, match="masks_dir is empty.*ivif data masks"):
        train(cfg, progress=False)
    cfg = load(TrainRSCConfig, None, {"tasks": tasks, "threads": 1, "masks_dir": str(tmp_path / "none"),
                                      "out": str(tmp_path / "b")})
    with pytest.raises(UserError, match="does not exist"):
        train(cfg, progress=False)
    # the shipped two-task config names the user's masks folder as the one thing to set
    rc = main(["train", "rsc", "--config", "config/train_rsc_two_tasks.yaml", "--out", str(tmp_path / "c"), "--set",
               f"tasks=[{{name: segmentation, weights: {random_segmenter_ckpt}}}]"])
    assert rc == 1 and "masks_dir is empty" in capsys.readouterr().err
