"""Fusion models: backbone (VFN), VIFA heads, RSC module, checkpoints."""
