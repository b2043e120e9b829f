"""`ivif train vifa`: shared backbone + one-layer task heads with key-channel and reference distillation."""

from __future__ import annotations

from ._common import training_verb

COMMAND = ("train", "vifa")
HELP = "train VIFA task heads on a shared backbone (key-channel + reference-model distillation)"

add_arguments, run = training_verb("train_vifa.yaml", "TrainVifaConfig", "vifa", steps=True,
                                   extra=("key channels=key_channels.md",))
