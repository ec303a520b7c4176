"""The engine builds the LD teacher through the one weight path and hands it to the Distiller;
``distill/`` itself reads no configs and no files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.config import dump_config, to_dict
from locdistill.distill.distiller import Distiller
from locdistill.engine.build import build_distiller
from locdistill.engine.checkpoint import save_checkpoint
from locdistill.engine.teacher import build_teacher, resolve_teacher_config
from locdistill.models.detectors.gfl import build_gfl
from locdistill.utils.hashing import sha256_file
from locdistill.weights import WeightsError
from tests.helpers import tiny_config


def teacher_file(tmp_path: Path, stored: bool = True) -> tuple[Path, torch.nn.Module]:
    cfg = tiny_config(tmp_path / "t")
    torch.manual_seed(3)
    teacher = build_gfl(cfg.model).eval()
    state = {"model": teacher.state_dict()}
    if stored:
        state["config"] = to_dict(cfg)
    return save_checkpoint(tmp_path / "teacher.pth", state), teacher


def test_teacher_from_the_config_stored_in_its_checkpoint(tmp_path: Path) -> None:
    path, expected = teacher_file(tmp_path)
    cfg = tiny_config(tmp_path / "s", [f"distill.teacher_checkpoint={path}"])
    assert cfg.distill is not None and cfg.distill.teacher_config == ""
    assert resolve_teacher_config(cfg) is None
    teacher, digest = build_teacher(cfg)
    assert digest == sha256_file(path) and not teacher.training
    assert all(
        torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), expected.state_dict().values())
    )
    student = build_gfl(cfg.model)
    distiller = build_distiller(cfg, student)  # what training builds: the teacher handed in, ready
    assert isinstance(distiller, Distiller) and distiller.teacher_sha256 == digest
    assert all(
        torch.equal(a, b)
        for a, b in zip(distiller.teacher.state_dict().values(), teacher.state_dict().values())
    )


def test_teacher_config_beside_the_student_config_and_a_clear_misfit(tmp_path: Path) -> None:
    path, _ = teacher_file(tmp_path, stored=False)
    student_dir = tmp_path / "student"
    student_dir.mkdir()
    dump_config(tiny_config(tmp_path / "t"), student_dir / "teacher.yaml")
    cfg = tiny_config(
        student_dir, [f"distill.teacher_checkpoint={path}", "distill.teacher_config=teacher.yaml"]
    )
    cfg.source = str(student_dir / "student.yaml")
    assert resolve_teacher_config(cfg) == student_dir / "teacher.yaml"
    build_teacher(cfg)
    dump_config(tiny_config(tmp_path / "t", ["model.head.num_classes=9"]), student_dir / "teacher.yaml")
    with pytest.raises(
        WeightsError, match=r"teacher\.pth does not fit the model built from .*teacher\.yaml: .*5 classes"
    ):
        build_teacher(cfg)
    cfg.distill.teacher_config = ""  # type: ignore[union-attr]
    with pytest.raises(WeightsError, match="teacher.pth stores no locdistill config"):
        build_teacher(cfg)
    cfg.distill.teacher_checkpoint = ""  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="distill.teacher_checkpoint is required"):
        build_teacher(cfg)
