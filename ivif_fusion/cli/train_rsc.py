"""`ivif train rsc`: RSC task customization against frozen backbone and task networks."""

from __future__ import annotations

from ._common import training_verb

COMMAND = ("train", "rsc")
HELP = "train the RSC task-customization module (backbone and task networks frozen, CAGrad over tasks)"

add_arguments, run = training_verb("train_rsc.yaml", "TrainRSCConfig", "rsc", steps=True)
