"""Training jobs, one module per job; each exposes ``train(cfg) -> checkpoint path``."""
