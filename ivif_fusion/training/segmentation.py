"""`ivif train task --task segmentation`: the small U-Net trained on fused images against class-id masks.

1. Images: the fused-image cache of task training (:mod:`ivif_fusion.training.fused_images`,
   MSRS only: train range -> training, val range (frames >= 1400) -> selection; eval-20 and the
   guard band are never read), so detection and segmentation of one fusion mode share it.
2. Targets: ``<masks_dir>/<name>.png``, uint8 class ids (0 background, 1 car, 2 person, 3 bike,
   255 ignore), e.g. the box-supervised pseudo-masks of ``ivif data masks`` (docs/pseudo_masks.md).
   The network predicts ids 0..3, which are the first four ids of the MSRS/MFNet label set
   (``MSRS_SEG_CLASSES``), so no mapping is needed between its masks and MSRS masks.
3. Training: one random crop of every training pair per epoch (``seg_object_crops`` of them
   centred on an object pixel, horizontal flips), batches in a seeded order; pixel cross-entropy
   with ``ignore_index`` 255 and class weights from the training masks' pixel frequencies
   (:func:`class_weights`): objects are a few per cent of the pixels, so unweighted cross-entropy
   is dominated by background and under-segments objects, while plain inverse frequency gives the
   rarest class (bike) hundreds of times the background's weight on few, noisy pixels; the
   inverse square root is the default compromise. AdamW, cosine learning rate.
4. Selection: after every epoch the mean IoU of car, person and bike on the val range (full
   images); the best epoch's weights are saved as ``<out>/unet_seg.pt`` (kind ``task-segmentation``)
   with the command, config and val metrics in its ``meta``; ``log.csv`` has one row per epoch;
   ``last_state.pt`` (weights, optimizer, epoch, best so far) lets ``--set resume=...`` continue.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..config import to_dict
from ..train_config import TrainRSCConfig, TrainTaskConfig
from ..data.pseudo_mask_folder import read_mask
from ..data.pseudo_masks import IGNORE
from ..models import checkpoint
from ..paths import require_data_root, resolve
from ..tasks.segmentation import MSRS_SEG_CLASSES, SegmenterConfig, SmallSegmenter
from .fused_images import TaskTrainingError, build_yolo_dataset, dataset_classes
from .run import CsvLog, cosine_lr, prepare_out, run_meta, seed_everything

#: the classes the segmenter predicts: ids 0..3 of the MSRS label set (the ids the pseudo-masks hold)
SEG_CLASSES = list(MSRS_SEG_CLASSES[:4])
STATE_KIND = "segmentation-train-state"
CHECKPOINT_NAME = "unet_seg.pt"


@dataclass
class MaskedImages:
    """Fused RGB images (H, W, 3) uint8 with their (H, W) uint8 class-id masks, by pair name."""

    names: list = field(default_factory=list)
    images: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    missing: list = field(default_factory=list)  # pair names without a mask (counted, left out)


def require_masks_dir(cfg: TrainTaskConfig | TrainRSCConfig) -> Path:
    """``cfg.masks_dir`` as a folder that holds masks, or a clear error saying how to make one
    (segmentation training and RSC training with a segmentation task)."""
    how = ("write box-supervised pseudo-masks with `ivif data masks --dataset MSRS --out DIR` and pass "
           "--set masks_dir=DIR (docs/pseudo_masks.md)")
    if not cfg.masks_dir:
        raise TaskTrainingError(f"task 'segmentation' needs class-id masks and masks_dir is empty: {how}")
    folder = resolve(cfg.masks_dir)
    if not folder.is_dir():
        raise TaskTrainingError(f"masks_dir {folder} does not exist: {how}")
    if not any(folder.glob("*.png")):
        raise TaskTrainingError(f"masks_dir {folder} holds no masks (*.png): {how}")
    return folder


def load_masked_split(images_dir: Path, masks_dir: Path, num_classes: int, prefix: str = "MSRS_") -> MaskedImages:
    """The cached fused images of one split (``<prefix><name>.png``) with ``<masks_dir>/<name>.png``."""
    import cv2

    out = MaskedImages()
    for path in sorted(images_dir.glob(f"{prefix}*.png")):
        name = path.stem[len(prefix):]
        if not (masks_dir / f"{name}.png").is_file():
            out.missing.append(name)
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise TaskTrainingError(f"cached fused image {path} cannot be read (delete the cache folder to rebuild)")
        mask = read_mask(masks_dir, name, bgr.shape[:2])
        bad = sorted(set(np.unique(mask).tolist()) - set(range(num_classes)) - {IGNORE})
        if bad:
            raise TaskTrainingError(f"{masks_dir / (name + '.png')}: class ids {bad} outside 0..{num_classes - 1} "
                                    f"and {IGNORE} (ignore)")
        out.names.append(name)
        out.images.append(np.ascontiguousarray(bgr[..., ::-1]))
        out.masks.append(mask)
    return out


def class_weights(masks: list[np.ndarray], num_classes: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy weights and pixel frequencies f_c of the classes (ignore pixels not counted).

    ``none``: 1; ``sqrt_inverse``: 1/sqrt(f_c); ``inverse``: 1/f_c; the last two scaled so that
    sum_c f_c w_c = 1 (the weighted loss keeps the scale of the unweighted one). A class with no
    pixel gets weight 0 (it is never a target).
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for m in masks:
        v = m[m != IGNORE].astype(np.int64)
        counts += np.bincount(v, minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1.0)
    if mode == "none":
        return np.ones(num_classes), freq
    power = {"sqrt_inverse": 0.5, "inverse": 1.0}.get(mode)
    if power is None:
        raise TaskTrainingError(f"unknown seg_class_weights '{mode}'; choose none, sqrt_inverse or inverse")
    w = np.zeros(num_classes)
    seen = freq > 0
    w[seen] = freq[seen] ** -power
    return w / float((freq * w).sum()), freq


class MaskCrops:
    """Deterministic crops: crop ``i`` of epoch ``e`` depends only on (seed, e, i).

    With probability ``object_p`` the crop contains a random object pixel (class 1..K-1) at a
    random position in its middle half; otherwise it is uniform. Horizontal flip with probability 0.5
    (no vertical flips: driving scenes have a ground). Images smaller than the crop are padded
    (reflected image, ignore mask).
    """

    def __init__(self, data: MaskedImages, crop: int, object_p: float, seed: int) -> None:
        self.data, self.crop, self.object_p, self.seed = data, crop, object_p, seed
        self.objects = [np.flatnonzero((m > 0) & (m != IGNORE)) for m in data.masks]

    def __len__(self) -> int:
        return len(self.data.images)

    def sample(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, i])
        img, mask, c = self.data.images[i], self.data.masks[i], self.crop
        h, w = mask.shape
        if h < c or w < c:
            ph, pw = max(0, c - h), max(0, c - w)
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE)
        h, w = mask.shape
        use_object = rng.random() < self.object_p and self.objects[i].size > 0
        if use_object:
            py, px = divmod(int(self.objects[i][rng.integers(self.objects[i].size)]), mask.shape[1])
            y0 = int(np.clip(py - rng.integers(c // 4, 3 * c // 4 + 1), 0, h - c))
            x0 = int(np.clip(px - rng.integers(c // 4, 3 * c // 4 + 1), 0, w - c))
        else:
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        im, mk = img[y0:y0 + c, x0:x0 + c], mask[y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            im, mk = im[:, ::-1], mk[:, ::-1]
        return im, mk

    def batch(self, epoch: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, c, c) float 0..1 images and (B, c, c) int64 masks."""
        pairs = [self.sample(epoch, i) for i in indices]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 255.0
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        return x.contiguous(), y


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the training pairs in ``epoch`` (a permutation seeded by (seed, epoch))."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n).tolist()


def evaluate_masks(seg: SmallSegmenter, data: MaskedImages) -> dict:
    """Val metrics of the segmenter on full images (see :meth:`SmallSegmenter.evaluate`)."""
    return seg.evaluate(data.images, data.masks)


def _metric_row(res: dict) -> list[str]:
    return [f"{res['mIoU_objects']:.4f}"] + [f"{res['IoU'][c]:.4f}" for c in SEG_CLASSES] + [
        f"{res['pixel_accuracy']:.4f}"]


def _check(cfg: TrainTaskConfig) -> None:
    if cfg.seg_crop % 8:
        raise TaskTrainingError(f"seg_crop {cfg.seg_crop} must be a multiple of 8")
    if list(cfg.datasets) != ["MSRS"]:
        raise TaskTrainingError(f"segmentation trains on MSRS only (masks_dir holds one dataset's masks and MSRS "
                                f"has the val range); got datasets {list(cfg.datasets)}")


def train_segmenter(cfg: TrainTaskConfig, progress: bool = True, max_steps: int | None = None) -> Path:
    """Train the segmenter of ``cfg`` (see module docstring); returns the path of ``unet_seg.pt``.

    ``max_steps`` stops early (tests) without changing the schedule.
    """
    from tqdm import tqdm

    _check(cfg)
    masks_dir = require_masks_dir(cfg)
    seed_everything(cfg)
    t0 = time.time()
    root = require_data_root(cfg.data_root or None)
    data_yaml = build_yolo_dataset(cfg, dataset_classes(root, "MSRS"), progress)
    k = len(SEG_CLASSES)
    train_set = load_masked_split(data_yaml.parent / "images" / "train", masks_dir, k)
    val_set = load_masked_split(data_yaml.parent / "images" / "val", masks_dir, k)
    for split, d in (("train", train_set), ("val", val_set)):
        if not d.images:
            raise TaskTrainingError(f"no MSRS {split} pair has a mask in {masks_dir} ({len(d.missing)} pairs "
                                    f"without one, e.g. {d.missing[:3]}); were the masks written for MSRS?")
        if d.missing:
            print(f"WARNING: {len(d.missing)} MSRS {split} pairs have no mask in {masks_dir} and are left out "
                  f"(e.g. {d.missing[:3]})", flush=True)
    weights, freq = class_weights(train_set.masks, k, cfg.seg_class_weights)
    device = torch.device(cfg.device if cfg.device != "0" else "cuda:0")
    seg = SmallSegmenter(SegmenterConfig(classes=list(SEG_CLASSES), width=cfg.seg_width), seed=cfg.seed).to(device)
    opt = torch.optim.AdamW(seg.model.parameters(), lr=cfg.seg_lr, weight_decay=1e-4)
    crops = MaskCrops(train_set, cfg.seg_crop, cfg.seg_object_crops, cfg.seed)
    steps_per_epoch = math.ceil(len(crops) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = total // 20
    stop = total if max_steps is None else min(total, max_steps)
    start_epoch, best, best_epoch, best_state = 0, -1.0, -1, None
    if cfg.resume:
        state = checkpoint.load(resolve(cfg.resume), STATE_KIND)
        checkpoint.load_state(seg.model, state["state_dict"], cfg.resume)
        opt.load_state_dict(state["optimizer"])
        start_epoch, best, best_epoch = int(state["epoch"]), float(state["best"]), int(state["best_epoch"])
        best_state = state["best_state"]
    out = prepare_out(cfg)
    log_path = out / "log.csv"
    log = CsvLog(log_path, ["epoch", "step", "lr", "train_loss", "val_mIoU_objects"]
                 + [f"val_IoU_{c}" for c in SEG_CLASSES] + ["val_pixel_accuracy", "seconds"],
                 append=bool(cfg.resume and log_path.exists()))
    class_w = torch.tensor(weights, dtype=torch.float32, device=device)
    step = start_epoch * steps_per_epoch
    prepare_s = time.time() - t0
    t1 = time.time()
    bar = tqdm(total=stop, initial=min(step, stop), desc="train segmentation", disable=not progress, unit="step")
    epoch = start_epoch
    while epoch < cfg.epochs and step < stop:
        seg.train()
        order, losses = epoch_order(len(crops), cfg.seed, epoch), []
        for b in range(steps_per_epoch):
            x, y = crops.batch(epoch, order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            lr = cosine_lr(step, total, cfg.seg_lr, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(seg.logits(x.to(device)), y.to(device), weight=class_w, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= stop:
                break
        seg.eval()
        res = evaluate_masks(seg, val_set)
        if res["mIoU_objects"] > best:
            best, best_epoch = res["mIoU_objects"], epoch + 1
            best_state = {n: v.detach().cpu().clone() for n, v in seg.model.state_dict().items()}
        log.row([epoch + 1, step, f"{lr:.6g}", f"{np.mean(losses):.5f}"] + _metric_row(res)
                + [f"{time.time() - t1:.1f}"])
        if progress:
            bar.write(f"epoch {epoch + 1}/{cfg.epochs}  loss {np.mean(losses):.4f}  val mIoU (car, person, bike) "
                      f"{res['mIoU_objects']:.4f}  best {best:.4f} (epoch {best_epoch})")
        epoch += 1
        checkpoint.save(out / "last_state.pt", STATE_KIND, seg.cfg.to_dict(), seg.model.state_dict(),
                        {"train_config": to_dict(cfg)}, optimizer=opt.state_dict(), epoch=epoch, best=best,
                        best_epoch=best_epoch, best_state=best_state)
    bar.close()
    log.close()
    train_s = time.time() - t1
    if best_state is not None:
        seg.model.load_state_dict(best_state)
    seg.freeze()
    final = evaluate_masks(seg, val_set)
    metrics = {"MSRS val": {"mIoU_objects": final["mIoU_objects"], "mIoU_all": final["mIoU"], "IoU": final["IoU"],
                            "pixel_accuracy": final["pixel_accuracy"], "images": final["images"]}}
    meta = run_meta(cfg, task="segmentation", metrics=metrics, best_epoch=best_epoch, epochs_run=epoch, steps=step,
                    class_weights=dict(zip(SEG_CLASSES, np.round(weights, 4).tolist(), strict=True)),
                    class_pixel_fraction=dict(zip(SEG_CLASSES, np.round(freq, 6).tolist(), strict=True)),
                    data={"MSRS": {"train": len(train_set.images), "val": len(val_set.images),
                                   "train_without_mask": len(train_set.missing),
                                   "val_without_mask": len(val_set.missing)}},
                    masks_dir=str(masks_dir), train_seconds=round(train_s, 1), prepare_seconds=round(prepare_s, 1),
                    metric_note="mIoU_objects: mean IoU of car, person, bike; mIoU_all adds the background; "
                                f"ignore ({IGNORE}) pixels skipped; against the masks in masks_dir, fusion={cfg.fusion}")
    path = seg.save(out / CHECKPOINT_NAME, meta)
    (out / "metrics.json").write_text(json.dumps(meta, indent=1))
    return path



def model_card(path: str | Path, shipped_as: str = "models/unet_seg_msrs.pt") -> str:
    """Markdown model-card section of a segmentation checkpoint, generated from its ``meta`` (never retyped)."""
    seg = SmallSegmenter.from_checkpoint(path)
    meta, tc = seg.meta(), seg.meta().get("train_config", {})
    n_params = sum(p.numel() for p in seg.model.parameters())
    data = meta.get("data", {}).get("MSRS", {})
    fused = {"vfn": f"generic fusion by `{tc.get('fusion_weights')}` (fused Y with the visible colour: what the "
                    "pipeline feeds a task network)",
             "max": "pixel-max of IR and visible Y with the visible colour"}.get(tc.get("fusion"), f"{tc.get('fusion')} only")
    lines = [
        f"## Segmentation: {Path(shipped_as).name}", "",
        "**Trained and scored on box-supervised pseudo-masks, not on human segmentation labels.** The shared "
        "data has detection boxes only; `ivif data masks` turns them into masks (GrabCut inside each box, 255 where "
        "the method is unsure; docs/pseudo_masks.md). **The mIoU below measures agreement with that method, not "
        "MSRS segmentation mIoU**, and must not be compared with published MSRS/MFNet figures.", "",
        f"- File: `{shipped_as}` (kind `task-segmentation`, {n_params / 1e6:.3f} M parameters): a small U-Net "
        f"(width {seg.cfg.width}, stride-8 bottleneck) predicting ids {', '.join(f'{i} {c}' for i, c in enumerate(seg.classes))}: "
        "the first ids of the MSRS/MFNet label set (0 is the background of the pseudo-masks). Load with "
        "`ivif_fusion.tasks.load_task`; input RGB of any size, output an (H, W) uint8 mask of the input size.",
        f"- Training images: {fused}; MSRS train range (frames 131-1399, {data.get('train')} pairs), epoch selected "
        f"on the val range (frames 1400+, {data.get('val')} pairs); eval-20 and the guard band never used.",
        f"- Targets: `{tc.get('masks_dir')}` (`ivif data masks --dataset MSRS --out {tc.get('masks_dir')}`).",
        f"- Recipe: {tc.get('epochs')} epochs of one {tc.get('seg_crop')} px crop per training pair "
        f"({tc.get('seg_object_crops')} of them centred on an object pixel, horizontal flips), batch {tc.get('batch_size')}, "
        f"AdamW lr {tc.get('seg_lr')} (cosine), cross-entropy ignoring 255 with `{tc.get('seg_class_weights')}` class "
        f"weights {meta.get('class_weights')} (training pixel fractions {meta.get('class_pixel_fraction')}); "
        f"seed {tc.get('seed')}, {tc.get('threads')} threads, device {tc.get('device')}; best epoch {meta.get('best_epoch')}.",
        f"- Time: {meta.get('train_seconds', 0) / 60:.1f} min training (+{meta.get('prepare_seconds', 0) / 60:.1f} min "
        "fusing/caching images and loading masks) on a shared 2-core CPU.",
        f"- Command: `{meta.get('command')}`" + (f", then `cp {tc.get('out')}/unet_seg.pt {shipped_as}`." if tc.get("out") else "."),
        "", "| split | pairs | mIoU car/person/bike (%) | mIoU incl. background (%) | "
        + " | ".join(f"IoU {c} (%)" for c in seg.classes) + " | pixel accuracy (%) |",
        "|" + "---|" * (5 + len(seg.classes)),
    ]
    for split, m in meta.get("metrics", {}).items():
        lines.append(f"| {split} | {m['images']} | {100 * m['mIoU_objects']:.1f} | {100 * m['mIoU_all']:.1f} | "
                     + " | ".join(f"{100 * m['IoU'][c]:.1f}" for c in seg.classes) + f" | {100 * m['pixel_accuracy']:.1f} |")
    lines += ["", f"Metric: {meta.get('metric_note', '')}. `ivif eval tasks --task segmentation={shipped_as}` scores IR, "
              "visible, pixel-max and fused inputs on MSRS eval-20 against the same kind of masks.", ""]
    return "\n".join(lines)
