"""The YAML config loader: ``_base_`` inheritance, unknown keys, typed ``--set`` overrides, round trips,
and every shipped config validating."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.config import (
    PACKAGE_CONFIG_DIR,
    Config,
    ConfigError,
    config_from_dict,
    dump_config,
    load_config,
    to_dict,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_base_inheritance_merges_recursively_and_later_files_win(tmp_path: Path) -> None:
    write(
        tmp_path / "_base_" / "model.yaml",
        "model:\n  backbone: {name: resnet50, frozen_stages: 1}\n  head: {num_classes: 80}\n",
    )
    write(tmp_path / "_base_" / "sched.yaml", "train:\n  epochs: 12\n  optim: {lr: 0.01, steps: [8, 11]}\n")
    write(
        tmp_path / "_base_" / "sched2x.yaml",
        "_base_: sched.yaml\ntrain:\n  epochs: 24\n  optim: {steps: [16, 22]}\n",
    )
    cfg_path = write(
        tmp_path / "exp" / "run.yaml",
        "_base_: [../_base_/model.yaml, ../_base_/sched2x.yaml]\nmodel:\n  backbone: {name: resnet18}\n",
    )
    cfg = load_config(cfg_path)
    assert cfg.model.backbone.name == "resnet18"  # overridden by the child
    assert cfg.model.backbone.frozen_stages == 1  # kept from the base (recursive merge)
    assert cfg.model.head.num_classes == 80
    assert cfg.train.epochs == 24 and cfg.train.optim.steps == [16, 22]
    assert cfg.train.optim.lr == 0.01  # from the grand-parent
    assert cfg.source == str(cfg_path)


def test_delete_replaces_a_section_instead_of_merging(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train:\n  optim: {lr: 0.02, steps: [1, 2]}\n")
    cfg = load_config(
        write(tmp_path / "c.yaml", "_base_: base.yaml\ntrain:\n  optim: {_delete_: true, lr: 0.5}\n")
    )
    assert cfg.train.optim.lr == 0.5
    assert cfg.train.optim.steps == [8, 11]  # back to the schema default, the base's steps are gone


def test_inheritance_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_key_names_the_full_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "model:\n  head:\n    num_clases: 20\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "model.head.num_clases" in str(err.value)
    assert "num_classes" in str(err.value)  # the valid keys are listed
    with pytest.raises(ConfigError, match="'bogus'"):
        load_config(write(tmp_path / "d.yaml", "bogus: 1\n"))


def test_unknown_key_in_a_base_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epocs"):
        load_config(write(tmp_path / "c.yaml", "_base_: base.yaml\n"))


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_set_overrides_are_typed_by_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "train: {epochs: 12}\n")
    cfg = load_config(
        path,
        [
            "train.epochs=3",
            "train.optim.lr=0.02",
            "train.optim.warmup_ratio=0.001",
            "train.amp=true",
            "train.optim.steps=[2, 3]",
            "data.img_scale=[416, 416]",
            "model.backbone.pretrained=/weights/r18.pth",
            "train.optim.grad_clip=35",
            "data.train.root=/data/coco128",
            "metric=voc",
        ],
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.optim.lr == 0.02 and cfg.train.optim.warmup_ratio == 1e-3
    assert cfg.train.amp is True
    assert cfg.train.optim.steps == [2, 3]
    assert cfg.data.img_scale == [416, 416]
    assert cfg.model.backbone.pretrained == "/weights/r18.pth"
    assert cfg.train.optim.grad_clip == 35.0 and isinstance(cfg.train.optim.grad_clip, float)
    assert cfg.data.train.root == "/data/coco128"
    assert cfg.metric == "voc"


def test_set_accepts_exponent_notation_for_floats(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path / "c.yaml", "train: {optim: {weight_decay: 1e-4}}\n"), ["train.optim.lr=1e-3"]
    )
    assert cfg.train.optim.lr == 1e-3 and cfg.train.optim.weight_decay == 1e-4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=x", r"train\.epochs.*integer"),
        ("train.epochs=1.5", r"train\.epochs.*integer"),
        ("train.amp=maybe", r"train\.amp.*true/false"),
        ("train.optim.lr=fast", r"train\.optim\.lr.*number"),
        ("train.optim.steps=3", r"train\.optim\.steps.*list"),
        ("metric=map", r"metric.*one of"),
        ("model.head.num_clases=3", r"model\.head\.num_clases"),
        ("train.epochs", r"key\.path=value"),
    ],
)
def test_set_override_errors_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = write(tmp_path / "c.yaml", "")
    with pytest.raises(ConfigError, match=message):
        load_config(path, [override])


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path / "c.yaml",
            "model: {head: {num_classes: 3}}\ndata: {multiscale: [[1333, 480], [1333, 800]]}\n",
        ),
        ["train.optim.grad_clip=10", "data.train.classes=[a, b, c]"],
    )
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    again = load_config(out)
    assert to_dict(again) == to_dict(cfg)
    assert to_dict(config_from_dict(to_dict(cfg))) == to_dict(cfg)


def test_config_from_dict_validates() -> None:
    data = to_dict(Config())
    data["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        config_from_dict(data)


def test_shipped_config_names_resolve() -> None:
    cfg = load_config("gfl/gfl_r18_fpn_coco_1x")
    assert cfg.model.backbone.name == "resnet18"
    assert Path(cfg.source).is_relative_to(PACKAGE_CONFIG_DIR)


# configs/data/ holds Ultralytics data.yaml files (dataset descriptions), not locdistill configs
SHIPPED = sorted(
    p for p in PACKAGE_CONFIG_DIR.rglob("*.yaml") if "_base_" not in p.parts and "data" not in p.parts
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(PACKAGE_CONFIG_DIR)))
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.head.num_classes > 0
    assert cfg.metric in ("coco", "voc")
    assert len(cfg.model.head.strides) == cfg.model.neck.num_outs
    assert all(s < cfg.train.epochs for s in cfg.train.optim.steps)


def test_configs_symlink_points_at_the_package_configs() -> None:
    link = Path(__file__).resolve().parents[1] / "configs"
    assert link.exists(), "the repository root should have configs -> src/locdistill/configs"
    assert link.resolve() == PACKAGE_CONFIG_DIR.resolve()


def test_seed_nms_name_is_an_alias_of_voting_cluster_diou(tmp_path: Path) -> None:
    """The seed's ``nms=dict(type='voting_cluster_diounms')`` is accepted and stored under our name, so
    saved configs, export and the post-processing all see one name."""
    cfg_file = write(
        tmp_path / "c.yaml", "model: {test: {nms: {type: voting_cluster_diounms, iou_threshold: 0.6}}}\n"
    )
    cfg = load_config(cfg_file)
    assert cfg.model.test.nms.type == "voting_cluster_diou"
    assert to_dict(cfg)["model"]["test"]["nms"]["type"] == "voting_cluster_diou"
    via_set = load_config(write(tmp_path / "d.yaml", ""), ["model.test.nms.type=voting_cluster_diounms"])
    assert via_set.model.test.nms.type == "voting_cluster_diou"
    with pytest.raises(ConfigError, match=r"model\.test\.nms\.type: 'soft_nms' is not one of"):
        load_config(write(tmp_path / "e.yaml", ""), ["model.test.nms.type=soft_nms"])


# ------------------------------------------------------------------- YAML 1.2 floats and range checks
def test_exponent_floats_in_files_and_base_chains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOLOST_LR", "5e-4")
    write(tmp_path / "base.yaml", "train: {optim: {lr: 5e-4, warmup_ratio: 1E-3}}\n")
    cfg = load_config(
        write(tmp_path / "c.yaml", "_base_: base.yaml\ntrain: {optim: {weight_decay: 2.5e-5}}\n"),
        ["train.optim.momentum=+9e-1", "train.ema_decay=.9998"],
    )
    assert cfg.train.optim.lr == 5e-4 and isinstance(cfg.train.optim.lr, float)
    assert cfg.train.optim.warmup_ratio == 1e-3
    assert cfg.train.optim.weight_decay == 2.5e-5
    assert cfg.train.optim.momentum == 0.9 and cfg.train.ema_decay == 0.9998
    # also through ${oc.env:...} (--set and files)
    cfg = load_config(write(tmp_path / "e.yaml", "train: {optim: {lr: '${oc.env:NOLOST_LR}'}}\n"))
    assert cfg.train.optim.lr == 5e-4
    # strings that only look a little like numbers stay strings
    cfg = load_config(write(tmp_path / "d.yaml", ""), ["data.train.root=1e", "data.val.root=5e-4x"])
    assert (cfg.data.train.root, cfg.data.val.root) == ("1e", "5e-4x")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", r"train\.epochs must be at least 1, got 0"),
        ("train.epochs=-2", r"train\.epochs must be at least 1, got -2"),
        ("model.head.reg_max=0", r"model\.head\.reg_max must be at least 1, got 0"),
        ("train.optim.lr=1e400", r"train\.optim\.lr must be a finite number above 0, got inf"),
        ("train.optim.lr=.nan", r"train\.optim\.lr must be a finite number above 0"),
        ("train.optim.lr=0", r"train\.optim\.lr must be a finite number above 0, got 0"),
        ("data.images_per_gpu=0", r"data\.images_per_gpu must be at least 1"),
        ("train.max_iters=0", r"train\.max_iters must be at least 1"),
    ],
)
def test_values_out_of_range_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.yaml", ""), [override])


def test_set_with_invalid_yaml_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set data\.img_scale: '\[1, 2' is not a valid YAML value"):
        load_config(write(tmp_path / "c.yaml", ""), ["data.img_scale=[1, 2"])


@pytest.mark.parametrize("base", ["3", "{a: 1}", "[models/a.yaml, 5]", "''", "null"])
def test_base_that_is_not_a_path_is_an_error(tmp_path: Path, base: str) -> None:
    path = write(tmp_path / "c.yaml", f"_base_: {base}\n")
    with pytest.raises(ConfigError, match=r"_base_ must be a path or a list of paths"):
        load_config(path)


def test_scaled_lr_that_overflows_is_an_error() -> None:
    from locdistill.engine.optim import scaled_lr

    assert scaled_lr(1e308, 8) == pytest.approx(5e307)
    with pytest.raises(
        ValueError, match=r"train\.optim\.lr=1e\+308 scaled to the total batch of 32 gives lr=inf"
    ):
        scaled_lr(1e308, 32)
