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


def test_shipped_multitask_config_runs_fusion_and_detection():
    cfg = C.load_runtime()
    kinds = {t.name: (t.kind, t.weights) for t in cfg.pipeline.tasks}
    assert kinds["fusion"] == ("fusion", "")
    assert kinds["detection"] == ("detection", "models/yolo_det_msrs.pt")
    assert C.runtime_defaults().pipeline.tasks[0].kind == "fusion"  # minimal pipeline for tools and tests


def test_multitask_seg_config_is_multitask_plus_a_segmentation_task(tmp_path, random_segmenter_ckpt):
    """config/multitask_seg.yaml: every key listed, multitask.yaml's settings and tasks plus the segmentation
    entry; it runs fusion + detection + segmentation (with a stand-in segmenter until the model ships)."""
    import numpy as np

    from ivif_fusion.errors import UserError
    from ivif_fusion.paths import resolve
    from ivif_fusion.runtime.pipeline import Pipeline

    path = CONFIG_DIR / "multitask_seg.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg, base = C.load_runtime(path), C.load_runtime()
    for section in ("pipeline", "sync", "ros", "replay"):
        assert set(raw[section]) == {f.name for f in dataclasses.fields(getattr(cfg, section))}, section
    task_keys = {f.name for f in dataclasses.fields(C.TaskConfig)}
    assert all(set(t) == task_keys for t in raw["pipeline"]["tasks"])
    seg = C.TaskConfig(name="segmentation", kind="segmentation", customization="generic",
                       weights="models/unet_seg_msrs.pt")
    assert cfg.pipeline.tasks == [*base.pipeline.tasks, seg]
    mine, theirs = C.to_dict(cfg), C.to_dict(base)
    for d in (mine, theirs):
        d["pipeline"].pop("tasks")
        d["pipeline"].pop("backbone_weights")  # the default backbone is chosen in multitask.yaml
    assert mine == theirs

    if not resolve(seg.weights).is_file():
        with pytest.raises(UserError, match="unet_seg_msrs.pt"):
            Pipeline.from_config(cfg)
        raw["pipeline"]["tasks"][2]["weights"] = str(random_segmenter_ckpt)
        (tmp_path / "seg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg = C.load_runtime(tmp_path / "seg.yaml", {"pipeline.threads": 1})
    pipe = Pipeline.from_config(cfg)
    rng = np.random.default_rng(0)
    outputs, _ = pipe.run_arrays(rng.random((96, 128), np.float32), rng.random((96, 128, 3), np.float32))
    assert list(outputs) == ["fusion", "detection", "segmentation"]
    assert outputs["detection"].detections is not None and outputs["fusion"].mask is None
    mask = outputs["segmentation"].mask
    assert mask.shape == (96, 128) and mask.dtype == np.uint8
    assert int(mask.max()) < len(pipe.plans[2].network.classes)
