"""Seeded deployment graphs (backbone + heads) shared by the export and backend tests."""

import torch

from ivif_fusion.models.heads import MultiHeadFusion, make_head
from ivif_fusion.models.vfn import VFN, VFNConfig

HEADS = ["generic", "det", "seg"]


def make_graph(seed: int = 0, heads: list[str] = HEADS) -> MultiHeadFusion:
    torch.manual_seed(seed)
    backbone = VFN()
    extra = {h: make_head(VFNConfig().width // 2) for h in heads if h != "generic"}
    return MultiHeadFusion(backbone, extra, head_names=heads).eval()
