"""Config loading beyond the schema: ``${oc.env:...}`` interpolation, paths relative to the config file,
``--data-root``, and an Ultralytics ``data.yaml`` as the dataset description (``data.ultralytics``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locdistill.config import ConfigError, load_config
from locdistill.config.resolve import set_data_root
from locdistill.config.ultralytics import read_data_yaml
from locdistill.data import build_dataset


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_environment_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = write(
        tmp_path / "c.yaml",
        "data:\n  train: {root: '${oc.env:LD_DATA}/coco', format: coco}\n"
        "  val: {root: '${oc.env:LD_MISSING,/fallback}'}\n"
        "train:\n  epochs: ${oc.env:LD_EPOCHS,12}\n",
    )
    monkeypatch.setenv("LD_DATA", "/mnt/data")
    monkeypatch.setenv("LD_EPOCHS", "3")
    cfg = load_config(cfg_file)
    assert cfg.data.train.root == "/mnt/data/coco" and cfg.data.val.root == "/fallback"
    assert cfg.train.epochs == 3  # a whole-value interpolation is typed like a YAML scalar
    monkeypatch.delenv("LD_EPOCHS")
    assert load_config(cfg_file).train.epochs == 12
    assert load_config(cfg_file, ["train.epochs=${oc.env:LD_N,5}"]).train.epochs == 5  # in --set too
    monkeypatch.delenv("LD_DATA")
    with pytest.raises(
        ConfigError, match=r"c\.yaml: data\.train\.root: environment variable LD_DATA is not set"
    ):
        load_config(cfg_file)


def test_data_root_and_teacher_checkpoint_resolve_beside_the_config_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "data" / "set").mkdir(parents=True)
    write(project / "teacher.pth", "")
    cfg_file = write(
        project / "cfgs" / "c.yaml",
        "data:\n  train: {root: ../data/set}\n  val: {root: elsewhere}\n"
        "distill: {teacher_config: t.yaml, teacher_checkpoint: ../teacher.pth}\n",
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file)
    assert cfg.data.train.root == str(project / "data" / "set")  # exists beside the config: taken from there
    assert cfg.data.val.root == "elsewhere"  # not there: stays relative to the working directory
    assert cfg.distill is not None and cfg.distill.teacher_checkpoint == str(project / "teacher.pth")
    assert cfg.distill.teacher_config == "t.yaml"
    set_data_root(cfg, project / "data")
    assert cfg.data.train.root == cfg.data.val.root == str(project / "data") and cfg.data.test is None
    with pytest.raises(FileNotFoundError, match="--data-root"):
        set_data_root(cfg, tmp_path / "nope")


def yolo_dataset(root: Path) -> None:
    """Two train images and one val image in the Ultralytics layout, 2 classes."""
    from PIL import Image

    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for name in names:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48)).save(root / "images" / split / f"{name}.jpg")
            write(root / "labels" / split / f"{name}.txt", "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.2 0.2\n")


def test_ultralytics_data_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yolo_dataset(tmp_path / "ds")
    write(
        tmp_path / "ds" / "data.yaml",
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n",
    )
    cfg_file = write(
        tmp_path / "cfg" / "mine.yaml",
        "_base_: " + str(Path(__file__).resolve().parents[1] / "configs/gfl/gfl_r18_fpn_coco128.yaml") + "\n"
        "data:\n  ultralytics: ../ds/data.yaml\n  train: {repeat: 2}\n",
    )
    monkeypatch.chdir(tmp_path / "cfg")
    cfg = load_config(cfg_file)
    assert cfg.model.head.num_classes == 2  # left out of mine.yaml: from the names (the base says 80)
    assert cfg.data.train.format == cfg.data.val.format == "yolo" and cfg.data.test is None
    assert cfg.data.train.root == str(tmp_path / "ds") and cfg.data.train.img_dir == "images/train"
    assert cfg.data.train.ann_file == "" and cfg.data.train.repeat == 2  # other split keys stay
    assert cfg.data.val.classes == ["cat", "dog"]
    val = build_dataset(cfg.data.val, cfg.data, train=False, mean=[0, 0, 0], std=[1, 1, 1])
    assert len(val) == 1 and val.class_names == ["cat", "dog"]  # type: ignore[union-attr]
    boxes = val.records[0].boxes.flatten().tolist()  # type: ignore[union-attr]
    assert boxes == pytest.approx([16.0, 12.0, 48.0, 36.0, 9.6, 7.2, 22.4, 16.8])
    # num_classes given by the config file or --set must agree with the names
    assert load_config(cfg_file, ["model.head.num_classes=2"]).model.head.num_classes == 2
    with pytest.raises(ConfigError, match="num_classes is 3 but .*data.yaml names 2 classes"):
        load_config(cfg_file, ["model.head.num_classes=3"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: a\nval: b\n", "'names' .* is missing"),
        ("train: a\nval: b\nnames: [x, y]\nnc: 3\n", "nc is 3 but 'names' lists 2"),
        ("train: a\nnames: [x]\n", "'train' and 'val' are required"),
        ("train: [a, b]\nval: c\nnames: [x]\n", "lists 2 sources"),
        ("train: a\nval: b\nnames: {0: x, 2: y}\n", "keys must be 0..1"),
        ("train: a\nval: b\nnames: [x, x]\n", "duplicate class names"),
    ],
)
def test_bad_data_yaml_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "data.yaml", text)
    with pytest.raises(ConfigError, match=message) as ex:
        read_data_yaml(path)
    assert str(path) in str(ex.value)


def test_shipped_yolo_config_reads_coco128_through_its_data_yaml(coco128_dir: Path) -> None:
    cfg = load_config("gfl/gfl_r18_fpn_coco128_yolo")
    assert cfg.model.head.num_classes == 80 and cfg.data.val.classes[0] == "person"
    set_data_root(cfg, coco128_dir)
    val = build_dataset(cfg.data.val, cfg.data, train=False, mean=[0, 0, 0], std=[1, 1, 1])
    assert len(val) == 25 and sum(len(r) for r in val.records) == 112  # type: ignore[union-attr]
