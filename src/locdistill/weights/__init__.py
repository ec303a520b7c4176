"""Weight I/O: the one way files with weights come in, below models and the engine.

::

    read_weights(path) -> WeightsFile          # read.py: any supported file as plain data, safely
      .format .content .config .meta .class_names
    extract_state_dict(file, use_ema) -> (sd, skipped)   # state_dict.py: ours / EMA / DDP / mmdetection
    load_weights(model, path | file, strict) -> LoadReport   # load.py: names missing / unexpected / shapes

Every failure raises :class:`WeightsError` (a ``ValueError``). mmdetection checkpoints are read by the
restricted unpickler of :mod:`~locdistill.weights.mmdet_import` and renamed by
:mod:`~locdistill.weights.mmdet_keys`. Nothing here imports models, the engine or the CLI.
"""

from locdistill.weights.errors import WeightsError, WeightsFileNotFoundError
from locdistill.weights.load import LoadReport, load_weights
from locdistill.weights.read import SAFETENSORS_SUFFIX, WeightsFile, read_weights
from locdistill.weights.state_dict import extract_state_dict, is_state_dict

__all__ = [
    "SAFETENSORS_SUFFIX",
    "LoadReport",
    "WeightsError",
    "WeightsFile",
    "WeightsFileNotFoundError",
    "extract_state_dict",
    "is_state_dict",
    "load_weights",
    "read_weights",
]
