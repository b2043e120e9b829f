"""The training jobs' configs: one dataclass per `ivif train <job>` (fusion, task, rsc, vifa).

Same schema machinery as the runtime config (:mod:`ivif_fusion.config`): every key has a default
and a help text, YAML files are loaded with :func:`ivif_fusion.config.load` and documented by
:mod:`ivif_fusion.config_doc`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import param
from .paths import DEFAULT_BACKBONE


@dataclass
class TrainRunConfig:
    """What every `ivif train` job has: data, seed, threads, device, output folder.

    Each job's config inherits these fields (YAML keys stay flat: ``seed: 0``, not ``run: {seed: 0}``);
    :mod:`ivif_fusion.training.run` uses them to set up the run.
    """

    data_root: str = param("", "Data root (empty: $IVIF_DATA or ../shared/data/ivif).")
    seed: int = param(0, "Seed of initialisation, sampling (crops, flips, batches) and augmentation.")
    threads: int = param(2, "Torch CPU threads.", min=1)
    device: str = param("cpu", "Torch device ('cpu', 'cuda', 'cuda:1'; task training also takes ultralytics' '0').")
    out: str = param("runs/train", "Output folder: checkpoint, log.csv, config.yaml.")


@dataclass
class TrainFusionConfig(TrainRunConfig):
    """`ivif train fusion`: stage-1 unsupervised training of the VFN backbone."""

    datasets: list = param(help="Paired folders under the data root used for training (MSRS: train range only).",
                           factory=lambda: ["MSRS", "TNO", "RoadScene", "VIFB"])
    arch: str = param("vfn2", "Backbone architecture (docs/backbone_v2.md): vfn (full-resolution dense blocks) or vfn2 "
                             "(reduced-resolution context path + full-resolution detail path).", choices=("vfn", "vfn2"))
    depth: int = param(0, "vfn: dilated dense blocks per encoder and in the decoder; vfn2: residual blocks of the "
                          "context path; 0 = the architecture's default (vfn 2, vfn2 8).", min=0)
    crop: int = param(128, "Random crop size (pixels) of training samples.", min=16)
    batch_size: int = param(8, "Crops per optimisation step (global batch across processes).", min=1)
    samples_per_image: int = param(4, "Crops drawn per image per epoch.", min=1)
    epochs: int = param(10, "Passes over the training images.", min=1)
    lr: float = param(1e-3, "Adam learning rate (cosine decay to 5 % over the run).", min=0.0)
    w_int: float = param(0.2, "Weight of the intensity term L1(F, max(IR, Y)).", min=0.0)
    w_grad: float = param(1.0, "Weight of the gradient term L1(|grad F|, max(|grad IR|, |grad Y|)).", min=0.0)
    w_salient: float = param(0.0, "Weight of the salient-target term: L1(F, IR) on pixels hotter than the image's "
                                  "mean + salient_k std (soft mask; 0 = off).", min=0.0)
    salient_k: float = param(1.0, "Thermal saliency threshold in standard deviations above the image mean.")
    w_scd: float = param(0.0, "Weight of the complementarity term 2 - SCD(F): what F adds to each source should "
                              "correlate with the other source (0 = off).", min=0.0)
    init: str = param("", "Start from these backbone weights (a vfn.pt checkpoint of the same arch and size; "
                          "empty: random initialisation). The LR schedule starts afresh: fine-tuning.")
    max_side: int = param(640, "Images with a longer side are downscaled to this before cropping (0 = keep).", min=0)
    out: str = param("runs/fusion", "Output folder: checkpoints (best/last), CSV log, config copy.")
    resume: str = param("", "Resume from this training-state file (runs/.../last_state.pt).")


@dataclass
class TrainTaskConfig(TrainRunConfig):
    """`ivif train task`: a task network trained on fused images (MSRS: train range; val range selects)."""

    task: str = param("detection", "Task network to train.", choices=("detection", "segmentation"))
    datasets: list = param(help="Labelled paired folders used (MSRS: train range, val range for selection; "
                                "LLVIP: person boxes mapped to class 0, training only).", factory=lambda: ["MSRS"])
    label_set: str = param("fusion", "MSRS box set (labels_det/<set>).", choices=("fusion", "infrared", "visible"))
    fusion: str = param("vfn", "Images the network is trained on: VFN-fused, pixel-max of IR and visible Y "
                               "(with visible colour), visible only or IR only.", choices=("vfn", "max", "visible", "ir"))
    fusion_weights: str = param(DEFAULT_BACKBONE, "Backbone checkpoint (any arch) used when fusion is 'vfn' "
                                                   "(the learned backbone).")
    arch: str = param("yolov8n.yaml", "Ultralytics model yaml (built from scratch, never a .pt download).")
    imgsz: int = param(320, "Training/inference size (long side, multiple of 32).", min=32)
    epochs: int = param(30, "Training epochs (segmentation: one crop of every training pair per epoch).", min=1)
    batch_size: int = param(8, "Images (segmentation: crops) per step.", min=1)
    nbs: int = param(8, "Ultralytics nominal batch: gradients are accumulated to it (= batch_size: one "
                        "optimizer step per batch, which short runs need).", min=1)
    warmup_epochs: float = param(1.0, "Learning-rate warmup epochs (ultralytics uses at least 100 iterations).",
                                 min=0.0)
    optimizer: str = param("auto", "Ultralytics optimizer name ('auto', 'SGD', 'AdamW', ...).")
    lr0: float = param(0.01, "Initial learning rate (ignored by optimizer 'auto').", min=0.0)
    mosaic: float = param(1.0, "Mosaic augmentation probability.", min=0.0, max=1.0)
    close_mosaic: int = param(5, "Last epochs without mosaic.", min=0)
    score_threshold: float = param(0.25, "Score threshold stored in the checkpoint for predict().", min=0.0, max=1.0)
    iou_threshold: float = param(0.45, "NMS IoU threshold stored in the checkpoint.", min=0.0, max=1.0)
    holdout_fold: str = param("", "Cross-fitting: 'k/n' leaves fold k of n (data.splits.cross_fit_fold) out of "
                                  "the training pairs and of the pairs that select the epoch, so that an RSC can "
                                  "learn from, and a cross-fitted evaluation judge by, this network's output on "
                                  "images it never saw (empty: train on all).")
    masks_dir: str = param("", "Segmentation: folder of class-id masks named like the MSRS pairs (<name>.png; 0 "
                               "background, 1 car, 2 person, 3 bike, 255 ignore), e.g. written by `ivif data masks "
                               "--out DIR` (box-supervised pseudo-masks, docs/pseudo_masks.md). Required for "
                               "task 'segmentation'.")
    seg_width: int = param(16, "Segmentation: U-Net base width (channels of the full-resolution stage).", min=4)
    seg_crop: int = param(256, "Segmentation: square training crop side (pixels, multiple of 8).", min=32)
    seg_object_crops: float = param(0.5, "Segmentation: fraction of training crops centred on a random object pixel "
                                         "(car/person/bike); the rest are uniform random crops.", min=0.0, max=1.0)
    seg_class_weights: str = param("sqrt_inverse", "Segmentation: cross-entropy class weights from the training "
                                                   "masks' pixel frequencies f_c: none, 1/sqrt(f_c) or 1/f_c, scaled so "
                                                   "the frequency-weighted mean weight is 1.",
                                   choices=("none", "sqrt_inverse", "inverse"))
    seg_lr: float = param(2e-3, "Segmentation: AdamW learning rate (cosine decay to 5 %, 5 % warm-up).", min=0.0)
    resume: str = param("", "Segmentation: resume from this training-state file (<out>/last_state.pt).")
    cache_dir: str = param("runs/task_data", "Where fused training images and the ultralytics data yaml are cached.")
    out: str = param("runs/task_detection", "Output folder: ultralytics run and the converted checkpoint "
                                            "(segmentation: unet_seg.pt, log.csv).")


@dataclass
class TrainRSCConfig(TrainRunConfig):
    """`ivif train rsc`: RSC task customization against frozen backbone and task networks."""

    dataset: str = param("MSRS", "Labelled paired folder (MSRS: train frame range only).")
    label_set: str = param("fusion", "MSRS box set (labels_det/<set>).", choices=("fusion", "infrared", "visible"))
    backbone: str = param(DEFAULT_BACKBONE, "Frozen backbone checkpoint (vfn or vfn2: the RSC variant follows its arch).")
    tasks: list = param(help="Tasks to customize for: mappings {name, weights} (task network checkpoints: a "
                             "detector, or a segmenter, which needs masks_dir), "
                             "optionally cross_fit: [one network per fold, trained with holdout_fold k/n]; then "
                             "the loss on fold-k pairs comes from network k (docs/rsc.md, cross-fitting).",
                        factory=lambda: [{"name": "detection", "weights": "models/yolo_det_msrs.pt"}])
    descriptor: str = param("features", "Task descriptor: pooled task-network features of the generic fused image, "
                                        "or learned per-task embeddings only.", choices=("features", "embedding"))
    crop: int = param(256, "Training crop size at full resolution (multiple of 32).", min=32)
    batch_size: int = param(4, "Crops per step.", min=1)
    steps: int = param(200, "Optimisation steps.", min=1)
    max_minutes: float = param(0.0, "Stop and save after this many minutes even if steps remain (0 = no limit).",
                               min=0.0)
    lr: float = param(2e-3, "Adam learning rate (cosine decay to 5 %).", min=0.0)
    alpha: float = param(5.0, "Weight of the reward/punishment term alpha * ReLU(L_t - L_ref).", min=0.0)
    reference: str = param("generic", "L_ref: task loss of the generic fused image on the same batch, or the "
                                      "previous step's task loss.", choices=("generic", "previous"))
    w_fid: float = param(1.0, "Weight of the fusion-fidelity term (the stage-1 fusion loss).", min=0.0)
    w_guard: float = param(0.0, "Weight of the fidelity guard: w_guard * sum over guard_metrics of ReLU(relative "
                                "drop of the batch mean vs the generic images - guard_budget) (0 = off).", min=0.0)
    guard_metrics: list = param(help="Fusion metrics the guard holds (VIF, Qabf).", factory=lambda: ["VIF", "Qabf"])
    guard_budget: float = param(0.03, "Relative drop of each guarded metric allowed for free (0.03 = 3 %).",
                                min=0.0, max=1.0)
    cagrad_c: float = param(0.5, "CAGrad c (0 = plain average of the task gradients: with Adam, the same steps as "
                                 "plain summing of the task objectives).", min=0.0)
    cagrad_rescale: bool = param(True, "Divide the CAGrad update by 1 + c^2 (reference implementation default).")
    num_bases: int = param(16, "Size of the shared basis bank.", min=1)
    hidden: int = param(32, "Width of the interaction blocks.", min=4)
    top_k: int = param(0, "0: soft basis selection; k > 0: hard top-k with straight-through gradients.", min=0)
    selection: str = param("cosine", "Basis-selection logits: sqrt(query_dim) * cosine of query and key (bounded: "
                                     "the selection keeps learning and differs by task), or the raw scaled dot "
                                     "product (unbounded: it saturates into one basis per branch for every task; "
                                     "the shipped single-task RSC's).", choices=("cosine", "dot"))
    gumbel: bool = param(True, "Gumbel noise on basis selection during training (never at inference).")
    descriptor_dropout: float = param(0.25, "Probability of training a batch on the stored mean descriptor "
                                            "(what inference uses when no task descriptor is given).",
                                      min=0.0, max=1.0)
    min_visible: float = param(0.4, "A cropped box is kept when at least this fraction of its area is inside.",
                               min=0.0, max=1.0)
    masks_dir: str = param("", "Folder of class-id masks named like the MSRS pairs (<name>.png; 0 background, 1 car, "
                               "2 person, 3 bike, 255 ignore), e.g. written by `ivif data masks --out DIR`: the "
                               "targets of a segmentation task (cropped and flipped with the images; its loss is "
                               "the segmenter's cross-entropy, 255 ignored). Required when a task network is a "
                               "segmenter, unused otherwise.")
    holdout_fold: str = param("", "Cross-fitted evaluation: 'k/n' leaves fold k of n (data.splits.cross_fit_fold) "
                                  "out of the training pairs, to be judged later with task networks trained with the "
                                  "same holdout_fold (experiments/cross_fit; empty: train on all).")
    out: str = param("runs/rsc", "Output folder: rsc.pt (kind 'rsc'), log.csv, config.yaml.")


@dataclass
class TrainVifaConfig(TrainRunConfig):
    """`ivif train vifa`: shared backbone + one-layer head per task, two distillations (docs/vifa.md)."""

    datasets: list = param(help="Paired folders used for training and key-channel selection (MSRS: train range "
                                "only).", factory=lambda: ["MSRS"])
    max_side: int = param(640, "Images with a longer side are downscaled to this before cropping (0 = keep).", min=0)
    teacher: str = param(DEFAULT_BACKBONE, "Teacher backbone checkpoint: the student backbone starts from it and "
                                               "its key channels are distilled.")
    tasks: list = param(help="One head per task: mappings {name, reference, weights, rsc_task, fallback, w_int, "
                             "w_grad}; reference is a registered kind (teacher, vfn, rsc, finetune), see docs/vifa.md.",
                        factory=lambda: [{"name": "detection", "reference": "rsc", "weights": "models/rsc_det_msrs.pt",
                                          "fallback": "finetune", "w_int": 0.6, "w_grad": 1.0},
                                         {"name": "segmentation", "reference": "finetune", "w_int": 0.1,
                                          "w_grad": 1.5},
                                         {"name": "fusion", "reference": "teacher"}])
    finetune_steps: int = param(60, "Steps of the 'finetune' reference: a copy of the teacher fine-tuned with the "
                                     "task's fusion-loss weights (w_int, w_grad).", min=0)
    layer: str = param("shared", "Teacher/student layer whose key channels are distilled (vfn2 has only "
                                 "'shared', the last shared map; vfn also offers encoder, fusion, decoder).",
                       choices=("encoder", "fusion", "decoder", "shared"))
    select_images: int = param(128, "Images used for key-channel selection (fewer if the data has fewer).", min=1)
    select_side: int = param(128, "Selection images are resized so the long side is this (FSIM cost).", min=16)
    threshold: float = param(0.9, "Channels whose mean FSIM reaches this are clustered together.", min=0.0, max=1.0)
    linkage: str = param("complete", "Clustering rule: complete (all pairs similar) or single (connected "
                                     "components).", choices=("complete", "single"))
    normalise: str = param("minmax", "Channel normalisation before FSIM: min-max to 0..255, or none.",
                           choices=("minmax", "none"))
    bins: int = param(256, "Histogram bins of the channel entropy that picks each cluster's key channel.", min=2)
    weighting: str = param("cluster_size", "Key-channel loss weights: cluster size / C, uniform, or entropy share.",
                           choices=("cluster_size", "uniform", "entropy"))
    cache_dir: str = param("runs/key_channels", "Cache of key-channel selections (JSON + markdown report).")
    crop: int = param(128, "Random crop size of training samples.", min=16)
    batch_size: int = param(8, "Crops per step.", min=1)
    steps: int = param(150, "Optimisation steps of the joint training.", min=1)
    lr: float = param(5e-4, "Adam learning rate (cosine decay to 5 %).", min=0.0)
    w_key: float = param(1.0, "Weight of the key-channel L2 (teacher vs student key channels).", min=0.0)
    w_ref: float = param(1.0, "Weight of each head's reference L2.", min=0.0)
    w_fusion: float = param(0.0, "Weight of the stage-1 fusion loss on each head output (0 = off).", min=0.0)
    train_backbone: bool = param(True, "Train the shared backbone too (False: heads only).")
    out: str = param("runs/vifa", "Output folder: vifa.pt (kind 'vifa'), log.csv, config.yaml, key-channel report.")


# --------------------------------------------------------------------------- loading
