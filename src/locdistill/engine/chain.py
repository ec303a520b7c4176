"""Teacher-assistant chains (e.g. R101 -> R34 -> R18) run as one command.

Each stage is a distillation config. Stage 1 uses the teacher its config names; every later stage is
taught by the previous stage's trained student: its ``distill.teacher_config`` and
``distill.teacher_checkpoint`` are replaced by the previous stage's resolved config and final
checkpoint. Each stage trains in ``work_root/stage{k}_{config stem}``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from locdistill.config import Config, dump_config, load_config
from locdistill.engine.train import train

logger = logging.getLogger(__name__)


def plan_chain(config_paths: list[str], overrides: list[str] | None = None) -> list[Config]:
    """Load and check every stage config; they must all have a ``distill`` section."""
    if len(config_paths) < 2:
        raise ValueError(
            "a teacher-assistant chain needs at least two stage configs (assistant, then student)"
        )
    stages = [load_config(p, overrides or []) for p in config_paths]
    for path, cfg in zip(config_paths, stages):
        if cfg.distill is None:
            raise ValueError(f"{path}: chain stages must have a 'distill' section")
    return stages


def run_chain(
    config_paths: list[str],
    work_root: str | Path,
    overrides: list[str] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Train the stages in order; returns the final checkpoint of each stage. A stage work dir that
    holds a run is refused unless ``overwrite`` (see :func:`~locdistill.engine.train.train`)."""
    work_root = Path(work_root)
    stages = plan_chain(config_paths, overrides)
    finals: list[Path] = []
    previous: tuple[Path, Path] | None = None
    for k, (path, cfg) in enumerate(zip(config_paths, stages), start=1):
        work_dir = work_root / f"stage{k}_{Path(path).stem}"
        if previous is not None:
            assert cfg.distill is not None
            cfg.distill.teacher_config = str(previous[0])
            cfg.distill.teacher_checkpoint = str(previous[1])
        logger.info(
            "chain stage %d/%d: %s, teacher %s",
            k,
            len(stages),
            path,
            cfg.distill.teacher_checkpoint if cfg.distill else "",
        )
        final = train(cfg, work_dir, overwrite=overwrite)
        stage_cfg = work_dir / "stage_config.yaml"
        # The next stage builds this student from its resolved config (a teacher needs no teacher).
        student_only = load_config(path, overrides or [])
        student_only.distill = None
        dump_config(student_only, stage_cfg)
        previous = (stage_cfg, final)
        finals.append(final)
    return finals
