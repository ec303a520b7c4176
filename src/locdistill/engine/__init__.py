"""Training engine: loop, optimiser and schedule, checkpoints, distributed helpers, evaluation, EMA.

Importing it is light: nothing here builds models or datasets at import time (train and evaluate
are imported from their modules: ``locdistill.engine.train``, ``locdistill.engine.evaluate``).
"""

from locdistill.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    sha256_file,
    strip_to_weights,
)
from locdistill.engine.distributed import (
    all_gather_object,
    barrier,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    reduce_mean,
)
from locdistill.engine.ema import ModelEMA
from locdistill.engine.optim import build_optimizer, build_scheduler, lr_factor, scaled_lr

__all__ = [
    "CheckpointError",
    "ModelEMA",
    "all_gather_object",
    "barrier",
    "build_optimizer",
    "build_scheduler",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "load_model_weights",
    "lr_factor",
    "reduce_mean",
    "save_checkpoint",
    "scaled_lr",
    "sha256_file",
    "strip_to_weights",
]
