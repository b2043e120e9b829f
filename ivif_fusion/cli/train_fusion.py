"""`ivif train fusion`: stage-1 training of the VFN backbone."""

from __future__ import annotations

from ._common import training_verb

COMMAND = ("train", "fusion")
HELP = "train the VFN fusion backbone without labels (intensity + gradient loss)"

add_arguments, run = training_verb("train_fusion.yaml", "TrainFusionConfig", "fusion", resume=True)
