"""Typed configuration: YAML files with ``_base_`` inheritance, validated into dataclasses.

A config file is a YAML mapping whose keys mirror :class:`Config`. ``_base_`` (a path or a list of
paths, relative to the file) names files merged first; later files override earlier ones key by key
(mappings merge recursively, everything else is replaced). An unknown key anywhere is an error that
names the key and the file. ``--set a.b=v`` overrides are parsed as YAML scalars and then checked
against the field's type, so ``--set train.epochs=3`` is an int and ``--set train.epochs=x`` an error.
Numbers such as ``5e-4`` are floats (YAML 1.2, :mod:`locdistill.config.yaml_io`; PyYAML alone reads them
as strings). Values out of range (``train.epochs < 1``, ``model.head.reg_max < 1``, an lr that is not
a finite positive number) are errors naming the key (:func:`~locdistill.config.validation.check_values`).

Only ``build_*`` functions read a :class:`Config`; modules take explicit keyword arguments.

Modules: ``schema.py`` (the dataclasses), ``distill.py`` (the ``distill`` section), ``load.py`` (files,
``_base_``, ``--set``, dump), ``validation.py`` (types and values, :class:`ConfigError`),
``yaml_io.py`` (YAML 1.2 numbers), ``resolve.py`` (``${oc.env:...}``, ``data.ultralytics``, relative
paths, ``--data-root``), ``ultralytics.py`` (an Ultralytics ``data.yaml``). Everything public is
re-exported here: ``from locdistill.config import Config, load_config``.
"""

from __future__ import annotations

from locdistill.config.distill import CrossKDConfig, DistillConfig, LDTermConfig, VLRConfig
from locdistill.config.load import (
    PACKAGE_CONFIG_DIR,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    load_raw,
    resolve_config_path,
    to_dict,
)
from locdistill.config.schema import (
    BackboneConfig,
    Config,
    DataConfig,
    DatasetConfig,
    EvaluationConfig,
    HeadConfig,
    ModelConfig,
    NeckConfig,
    NMSConfig,
    OptimConfig,
    TestConfig,
    TrainConfig,
)
from locdistill.config.validation import ConfigError, check_values, from_dict

__all__ = [
    "PACKAGE_CONFIG_DIR",
    "BackboneConfig",
    "Config",
    "ConfigError",
    "CrossKDConfig",
    "DataConfig",
    "DatasetConfig",
    "DistillConfig",
    "EvaluationConfig",
    "HeadConfig",
    "LDTermConfig",
    "ModelConfig",
    "NMSConfig",
    "NeckConfig",
    "OptimConfig",
    "TestConfig",
    "TrainConfig",
    "VLRConfig",
    "apply_overrides",
    "check_values",
    "config_from_dict",
    "dump_config",
    "from_dict",
    "load_config",
    "load_raw",
    "resolve_config_path",
    "to_dict",
]
