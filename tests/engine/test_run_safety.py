"""Training loses nothing to ordinary mistakes: bad validation files are caught before training, an
evaluation error keeps the epoch's checkpoint, a used work dir is not trained over without --resume or
--overwrite, pruning keeps the run's own final checkpoint, and unusable work dirs and checkpoints are
one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.cli import main
from locdistill.data import SHAPE_CLASSES
from locdistill.engine.checkpoint import load_checkpoint

CONFIG = """\
model:
  backbone: {name: resnet18, base_width: 8, pretrained: false}
  neck: {out_channels: 16}
  head: {num_classes: 5, feat_channels: 16, stacked_convs: 1, norm_groups: 4}
  test: {score_thr: 0.0}
data:
  train: {format: synthetic, root: DATA/train, num_images: 2, image_size: 64}
  val: {format: synthetic, root: DATA/val, num_images: 2, image_size: 64}
  img_scale: [64, 64]
  images_per_gpu: 2
  workers_per_gpu: 0
  test_images_per_gpu: 2
train:
  epochs: 1
  optim: {lr: 0.01, warmup_iters: 2, steps: [1]}
  eval_interval: 0
  log_interval: 1
metric: coco
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG.replace("DATA", str(tmp_path / "data")))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``(exit code, stderr)`` of ``locdistill ARGV``."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def assert_one_line_error(err: str, *parts: str) -> None:
    """``err`` (stderr, log lines included) ends with one ``error:`` line holding ``parts``; no traceback."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    for part in parts:
        assert part in lines[-1], (part, lines[-1])


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


# ---------------------------------------------------------------------------- validation data
def coco_val(root: Path, problem: str) -> list[str]:
    """A 3-image COCO validation set in ``root`` whose second image has ``problem``; returns overrides."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for k in range(3):
        name, (w, h) = f"v{k}.{'jpg' if k else 'png'}", (64, 64)
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if k == 1 and problem == "elongated":
            w, h = 2000, 8
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        if k == 1 and problem == "missing":
            path.unlink()
        if k == 1 and problem == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if k == 1 and problem == "mismatched":
            Image.fromarray(pixels[:48]).save(path)  # 64x48 on disk, 64x64 in the json
        images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
        annotations.append(
            {"id": k + 1, "image_id": k + 1, "category_id": 1, "bbox": [2, 2, 5, 4], "area": 20, "iscrowd": 0}
        )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(SHAPE_CLASSES)]
    (root / "val.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return [
        "data.val.format=coco",
        f"data.val.root={root}",
        "data.val.ann_file=val.json",
        "data.val.img_dir=images",
        "train.eval_interval=1",
    ]


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "v1.jpg: file not found"),
        ("truncated", "v1.jpg: cannot decode"),
        ("mismatched", "v1.jpg: the file is 64x48 (w x h) but its annotation says 64x64"),
        ("elongated", "v1.jpg: 2000x8 (w x h) is too elongated"),
    ],
)
def test_bad_validation_files_are_caught_before_training(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str, message: str
) -> None:
    work = tmp_path / "work"
    code, err = run(
        capsys, "train", str(config), "--work-dir", str(work), "--set", *coco_val(tmp_path / "val", problem)
    )
    assert code == 2
    assert_one_line_error(err, "validation data", "1 of 3 images cannot be used", message)
    assert not list(work.glob("*.pth"))
    metrics = work / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text().strip()  # not a single iteration ran


def test_too_elongated_training_images_are_caught_before_training(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [o.replace("data.val.", "data.train.") for o in coco_val(tmp_path / "train", "elongated")[:4]]
    overrides += ["data.multiscale=[[64, 16], [64, 64]]"]  # the smallest scale counts: 8 px -> 0.06 px
    work = tmp_path / "work"
    code, err = run(capsys, "train", str(config), "--work-dir", str(work), "--set", *overrides)
    assert code == 2
    assert_one_line_error(
        err, "training data", "1 of 3 images cannot be used", "v1.jpg: 2000x8 (w x h)", "[64, 16]"
    )
    assert not list(work.glob("*.pth"))


def test_an_evaluation_error_keeps_the_epoch_checkpoint(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from locdistill.data import BadImageError
    from locdistill.engine import train as train_module

    def broken(*args: object, **kwargs: object) -> None:
        raise BadImageError("cannot decode image file /data/val/v9.jpg: broken data stream")

    monkeypatch.setattr(train_module, "evaluate", broken)
    work = tmp_path / "work"
    overrides = [*coco_val(tmp_path / "val", "none"), "train.epochs=2"]
    code, err = run(capsys, "train", str(config), "--work-dir", str(work), "--set", *overrides)
    assert code == 2
    assert_one_line_error(err, "v9.jpg")
    ckpt = load_checkpoint(work / "epoch_1.pth")  # the epoch is kept, and resumable
    assert (ckpt["epoch"], ckpt["iter"], ckpt["global_iter"]) == (1, 0, 1)
    assert os.path.samefile(work / "latest.pth", work / "epoch_1.pth")
    monkeypatch.undo()
    code, err = run(capsys, "train", str(config), "--work-dir", str(work), "--resume", "--set", *overrides)
    assert code == 0, err
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "val"] == [1, 2]  # epoch 1 evaluated on resume
    assert load_checkpoint(work / "best.pth")["best"]["epoch"] in (1, 2)


# ------------------------------------------------------------------------------------ work dirs
def test_a_used_work_dir_needs_resume_or_overwrite(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    assert run(capsys, "train", str(config), "--work-dir", str(work))[0] == 0
    before = digest(work)
    code, err = run(capsys, "train", str(config), "--work-dir", str(work), "--set", "train.seed=1")
    assert code == 2
    assert_one_line_error(err, f"work dir {work} already holds a training run", "--resume", "--overwrite")
    assert digest(work) == before  # nothing touched
    (work / "tensorboard").mkdir()
    (work / "tensorboard" / "events.out").write_text("old run")
    (work / "metrics.rank1.jsonl").write_text("{}\n")
    (work / "notes.txt").write_text("mine")
    code, err = run(
        capsys, "train", str(config), "--work-dir", str(work), "--overwrite", "--set", "train.seed=1"
    )
    assert code == 0, err
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in records] == [1]  # the new run's records only, not mixed
    assert load_checkpoint(work / "latest.pth")["config"]["train"]["seed"] == 1
    assert not (work / "tensorboard").exists() and not (work / "metrics.rank1.jsonl").exists()
    assert (work / "notes.txt").read_text() == "mine"  # not a run's file: kept
    # a folder with other things in it, but no run, is fine
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("mine")
    assert run(capsys, "train", str(config), "--work-dir", str(other))[0] == 0
    assert (other / "README.txt").read_text() == "mine"


def test_pruning_keeps_the_new_runs_final_checkpoint(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    args = ["train", str(config), "--work-dir", str(work), "--set", "train.epochs=3", "train.keep_last=0"]
    assert run(capsys, *args)[0] == 0
    assert {p.name for p in work.glob("epoch_*.pth")} == {"epoch_1.pth", "epoch_2.pth", "epoch_3.pth"}
    # go back to epoch 1 and train 2 epochs with keep_last=1: the new epoch_2.pth must survive pruning
    code, err = run(
        capsys,
        "train", str(config), "--work-dir", str(work), "--resume", str(work / "epoch_1.pth"),
        "--set", "train.epochs=2", "train.keep_last=1",
    )  # fmt: skip
    assert code == 0, err
    final = load_checkpoint(work / "epoch_2.pth")
    assert final["global_iter"] == 2 and final["config"]["train"]["epochs"] == 2
    assert os.path.samefile(work / "latest.pth", work / "epoch_2.pth")
    assert not (work / "epoch_1.pth").exists()  # older than the new final: pruned
    assert (work / "epoch_3.pth").exists()  # the abandoned run's later checkpoint is not this run's to delete


def test_unusable_work_dirs_are_one_line_errors(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, err = run(capsys, "train", str(config), "--work-dir", str(a_file))
    assert code == 2
    assert_one_line_error(err, f"work dir {a_file}", "not a folder")
    code, err = run(capsys, "train", str(config), "--work-dir", str(a_file / "sub"))
    assert code == 2
    assert_one_line_error(err, f"work dir {a_file / 'sub'}")
    assert a_file.read_text() == "x"
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    target = read_only / "work"
    try:
        if os.access(read_only, os.W_OK):  # root ignores permissions: use sysfs, which refuses everyone
            if not Path("/sys/kernel").is_dir():
                pytest.skip("no read-only folder available to this user")
            target = Path("/sys/kernel/locdistill_work_dir")
        code, err = run(capsys, "train", str(config), "--work-dir", str(target))
    finally:
        read_only.chmod(0o700)
    assert code == 2
    assert_one_line_error(err, f"work dir {target}")


# --------------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    ("overrides", "base", "parts"),
    [
        (["train.epochs=0"], None, ["train.epochs must be at least 1, got 0"]),
        (["model.head.reg_max=0"], None, ["model.head.reg_max must be at least 1, got 0"]),
        (["train.optim.lr=1e400"], None, ["train.optim.lr must be a finite number above 0, got inf"]),
        (["train.optim.lr=1e308", "data.images_per_gpu=64"], None, ["lr=1e+308", "gives lr=inf"]),
        (["data.img_scale=[64, 64"], None, ["--set data.img_scale", "not a valid YAML value"]),
        ([], "_base_: {model: 1}\n", ["_base_ must be a path or a list of paths"]),
    ],
)
def test_config_mistakes_are_one_line_errors(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    base: str | None,
    parts: list[str],
) -> None:
    if base is not None:
        config.write_text(base + config.read_text())
    work = tmp_path / "work"
    code, err = run(
        capsys, "train", str(config), "--work-dir", str(work), *(["--set", *overrides] if overrides else [])
    )
    assert code == 2
    assert_one_line_error(err, *parts)
    assert not list(work.glob("*.pth"))


def test_pretrained_weights_offline_is_a_one_line_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket, "create_connection", offline)
    code, err = run(
        capsys,
        "train",
        str(config),
        "--work-dir",
        str(tmp_path / "w"),
        "--set",
        "model.backbone.pretrained=true",
        "model.backbone.base_width=64",  # the real ResNet-18, which has ImageNet weights
    )
    assert code == 2
    assert_one_line_error(err, "resnet18", "Temporary failure in name resolution")


def test_resume_from_a_converted_or_other_architecture_checkpoint(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    assert run(capsys, "train", str(config), "--work-dir", str(work))[0] == 0
    small = tmp_path / "small.pth"
    assert run(capsys, "convert", str(work / "latest.pth"), str(small))[0] == 0
    code, err = run(capsys, "train", str(config), "--work-dir", str(tmp_path / "w2"), "--resume", str(small))
    assert code == 2
    assert_one_line_error(err, f"cannot resume from {small}", "weights only")
    code, err = run(
        capsys,
        "train", str(config), "--work-dir", str(work), "--resume",
        "--set", "model.neck.out_channels=8", "model.head.feat_channels=8",
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, f"cannot resume from {work / 'latest.pth'}", "neck.")


def test_convert_refuses_to_write_over_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "w.pth"
    torch.save({"model": {"w": torch.ones(2)}}, ckpt)
    before = ckpt.read_bytes()
    (tmp_path / "link.pth").symlink_to(ckpt)
    for out in (ckpt, tmp_path / "." / "w.pth", tmp_path / "link.pth"):
        code, err = run(capsys, "convert", str(ckpt), str(out))
        assert code == 2
        assert_one_line_error(err, "would write over its own input")
    assert ckpt.read_bytes() == before
