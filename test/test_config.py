"""Config schema: shipped YAML files load, every key documented, unknown keys get a hint."""

import dataclasses

import pytest
import yaml

from ivif_fusion import config as C
from ivif_fusion import train_config as TC
from ivif_fusion.paths import CONFIG_DIR


def test_shipped_runtime_config_loads_and_covers_every_key():
    cfg = C.load_runtime()
    assert isinstance(cfg.pipeline.tasks[0], C.TaskConfig)
    raw = yaml.safe_load((CONFIG_DIR / "multitask.yaml").read_text())
    for section in ("pipeline", "sync", "ros", "replay"):
        fields = {f.name for f in dataclasses.fields(getattr(cfg, section))}
        assert set(raw[section]) == fields, f"config/multitask.yaml section '{section}' must list every key"


def test_every_parameter_has_a_description():
    for cls in (C.RuntimeConfig, TC.TrainFusionConfig, C.TaskConfig):
        for name, _tp, _default, helptext in C.describe(cls):
            assert helptext.strip(), f"{cls.__name__}.{name} has no description"


TRAIN_CONFIGS = {"train_fusion.yaml": "TrainFusionConfig", "train_task_detection.yaml": "TrainTaskConfig",
                 "train_task_segmentation.yaml": "TrainTaskConfig",
                 "train_rsc.yaml": "TrainRSCConfig", "train_rsc_two_tasks.yaml": "TrainRSCConfig",
                 "train_vifa.yaml": "TrainVifaConfig"}


@pytest.mark.parametrize("fname", sorted(TRAIN_CONFIGS))
def test_training_configs_share_the_run_fields_with_flat_keys(fname):
    cls = getattr(TC, TRAIN_CONFIGS[fname])
    assert issubclass(cls, TC.TrainRunConfig)
    run_keys = {"data_root", "seed", "threads", "device", "out"}
    assert run_keys <= {f.name for f in dataclasses.fields(cls)}
    for name, _tp, _default, helptext in C.describe(cls):
        assert helptext.strip(), f"{cls.__name__}.{name} has no description"
    # the shipped YAML keeps its flat keys: every top-level key is a field, run fields included
    data = yaml.safe_load((CONFIG_DIR / fname).read_text())
    cfg = C.load(cls, CONFIG_DIR / fname, {"seed": 5, "threads": 1})
    assert all(getattr(cfg, k) == v for k, v in data.items() if k not in ("seed", "threads"))
    assert (cfg.seed, cfg.threads) == (5, 1)
    # each job keeps its own output folder default
    assert cls().out == {"train_fusion.yaml": "runs/fusion", "train_task_detection.yaml": "runs/task_detection",
                         "train_task_segmentation.yaml": "runs/task_detection",
                         "train_rsc.yaml": "runs/rsc", "train_rsc_two_tasks.yaml": "runs/rsc",
                         "train_vifa.yaml": "runs/vifa"}[fname]
    with pytest.raises(C.ConfigError, match="did you mean 'seed'"):
        C.from_dict(cls, {"sead": 1})


def test_unknown_key_did_you_mean_and_type_checks():
    with pytest.raises(C.ConfigError, match="did you mean 'slop_s'"):
        C.from_dict(C.RuntimeConfig, {"sync": {"slop": 0.1}})
    with pytest.raises(C.ConfigError, match="expected int"):
        C.from_dict(C.SyncConfig, {"queue_size": "ten"})
    with pytest.raises(C.ConfigError, match="not one of"):
        C.from_dict(C.SyncConfig, {"mode": "fuzzy"})
    with pytest.raises(C.ConfigError, match="below the minimum"):
        C.from_dict(C.SyncConfig, {"queue_size": 0})
    assert C.from_dict(C.SyncConfig, {"slop_s": 1}).slop_s == 1.0  # int accepted for float


def test_overrides_and_yaml_dump_round_trip(tmp_path):
    cfg = C.load_runtime(overrides={"sync.slop_s": 0.02, "pipeline.threads": 1})
    assert cfg.sync.slop_s == 0.02 and cfg.pipeline.threads == 1
    p = tmp_path / "c.yaml"
    p.write_text(C.dump_yaml(cfg))
    again = C.load(C.RuntimeConfig, p)
    assert C.to_dict(again) == C.to_dict(cfg)
    with pytest.raises(C.ConfigError, match="not found"):
        C.load(C.RuntimeConfig, tmp_path / "missing.yaml")


def test_configuration_doc_is_current():
    from ivif_fusion.paths import SHARE_DIR

    doc = (SHARE_DIR / "docs" / "configuration.md").read_text()
    from ivif_fusion.config_doc import configuration_doc

    assert doc == configuration_doc(), "docs/configuration.md is stale: run python -m ivif_fusion.config_doc"


def test_shipped_multitask_config_runs_fusion_detection_and_segmentation_on_a_real_pair():
    """config/multitask.yaml: every key listed; the shipped backbone, detector and segmenter run on an MSRS pair."""
    import numpy as np

    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.paths import data_root
    from ivif_fusion.runtime.pipeline import Pipeline

    raw = yaml.safe_load((CONFIG_DIR / "multitask.yaml").read_text())
    cfg = C.load_runtime()
    for section in ("pipeline", "sync", "ros", "replay"):
        assert set(raw[section]) == {f.name for f in dataclasses.fields(getattr(cfg, section))}, section
    kinds = {t.name: (t.kind, t.weights) for t in cfg.pipeline.tasks}
    assert kinds == {"fusion": ("fusion", ""), "detection": ("detection", "models/yolo_det_msrs.pt"),
                     "segmentation": ("segmentation", "models/unet_seg_msrs.pt")}
    assert cfg.pipeline.backbone_weights == "models/vfn2_msrs.pt"
    assert C.runtime_defaults().pipeline.tasks[0].kind == "fusion"  # minimal pipeline for tools and tests

    root = data_root() / "MSRS"
    if not (root / "ir").is_dir():
        pytest.skip(f"shared data not found at {root}")
    pair = PairedFolder(root).load("00004N.png")
    pipe = Pipeline.from_config(C.load_runtime(overrides={"pipeline.threads": 1, "pipeline.max_side": 320}))
    outputs, _ = pipe.run_arrays(pair.thermal, pair.visible)
    assert list(outputs) == ["fusion", "detection", "segmentation"]
    assert outputs["fusion"].mask is None and outputs["detection"].detections is not None
    mask = outputs["segmentation"].mask
    assert mask.dtype == np.uint8 and mask.shape == (240, 320)
    ids = set(np.unique(mask).tolist())
    assert ids <= {0, 1, 2, 3} and 0 in ids  # background and MSRS object ids only
    assert 0.5 < float((mask == 0).mean()) < 1.0  # mostly background, not all of it
