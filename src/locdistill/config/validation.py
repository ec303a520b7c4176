"""Validation of plain data (parsed YAML, ``--set`` values, a checkpoint's config) against the config
dataclasses' annotations: every value is checked against its field's type and converted (nested
dataclasses, lists, unions, literals); an unknown key or a wrong type is a :class:`ConfigError` that names
the full key (``train.optim.lr``); :func:`check_values` adds the range checks (``train.epochs >= 1``...).
Used by :mod:`locdistill.config`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (dataclasses, lists, tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported schema type {tp}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys are errors naming the full key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"unknown config key '{full}' (valid keys here: {', '.join(sorted(names))})")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


def check_values(cfg: Any) -> None:
    """Range checks on a :class:`~locdistill.config.Config` that the types cannot express;
    :class:`ConfigError` names the key and the value."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("train.epochs", cfg.train.epochs, cfg.train.epochs >= 1, "at least 1"),
        ("model.head.reg_max", cfg.model.head.reg_max, cfg.model.head.reg_max >= 1, "at least 1"),
        ("model.head.num_classes", cfg.model.head.num_classes, cfg.model.head.num_classes >= 1, "at least 1"),
        (
            "train.optim.lr",
            cfg.train.optim.lr,
            math.isfinite(cfg.train.optim.lr) and cfg.train.optim.lr > 0,
            "a finite number above 0",
        ),
        ("data.images_per_gpu", cfg.data.images_per_gpu, cfg.data.images_per_gpu >= 1, "at least 1"),
        ("data.workers_per_gpu", cfg.data.workers_per_gpu, cfg.data.workers_per_gpu >= 0, "0 or more"),
        ("train.checkpoint_iters", cfg.train.checkpoint_iters, cfg.train.checkpoint_iters >= 0, "0 or more"),
    ]
    if cfg.train.max_iters is not None:
        checks.append(("train.max_iters", cfg.train.max_iters, cfg.train.max_iters >= 1, "at least 1"))
    for key, value, ok, must in checks:
        if not ok:
            raise ConfigError(f"{key} must be {must}, got {value!r}")
