"""Reading configs: YAML files with ``_base_`` inheritance, ``--set`` overrides, validation into a
:class:`~locdistill.config.schema.Config`, and writing them back (see :mod:`locdistill.config`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from locdistill.config.schema import Config
from locdistill.config.validation import ConfigError, check_values, from_dict
from locdistill.config.yaml_io import parse_yaml, read_yaml_file

PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.pop("_delete_", False):
            out[key] = _merge(out[key], value)
        else:
            if isinstance(value, dict):
                value.pop("_delete_", None)
            out[key] = value
    return out


def resolve_config_path(name: str | Path) -> Path:
    """A path as given, or else a config shipped in the package (``ld/ld_gflv1_r101_r18_fpn_coco_1x``)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (PACKAGE_CONFIG_DIR / path, PACKAGE_CONFIG_DIR / path.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config file not found: {name} (also looked in {PACKAGE_CONFIG_DIR})")


def load_raw(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and its ``_base_`` chain into one merged mapping (not yet validated)."""
    from locdistill.config.resolve import interpolate_env

    path = resolve_config_path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(map(str, (*_seen, path)))}")
    try:
        data = interpolate_env(read_yaml_file(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ConfigError(
            f"{path}: _base_ must be a path or a list of paths (relative to the file), got {bases!r}"
        )
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, load_raw(path.parent / base, (*_seen, path)))
    return _merge(merged, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data (what is saved in work dirs and checkpoints)."""
    out = dataclasses.asdict(cfg)
    out.pop("source", None)
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a raw mapping; values are parsed as YAML scalars."""
    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, text = item.split("=", 1)
        try:
            value = parse_yaml(text) if text else ""
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", "") or e).split())
            raise ConfigError(
                f"--set {key.strip()}: {text!r} is not a valid YAML value ({problem})"
            ) from None
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ConfigError(f"override {key!r}: '{part}' is not a section")
                node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load, merge ``_base_`` files, apply ``--set`` overrides and validate into a :class:`Config`;
    then expand ``${oc.env:...}``, ``data.ultralytics`` and relative paths (see
    :mod:`locdistill.config.resolve`)."""
    from locdistill.config.resolve import expand_ultralytics, interpolate_env, resolve_relative_paths

    resolved = resolve_config_path(path)
    raw = load_raw(resolved)
    try:
        if overrides:
            raw = apply_overrides(_deep_copy(raw), interpolate_env(list(overrides), "--set"))
        expand_ultralytics(raw, resolved, overrides or [])
        cfg: Config = from_dict(Config, raw)
        check_values(cfg)
    except ConfigError as e:
        raise ConfigError(f"{resolved}: {e}") from None
    resolve_relative_paths(cfg, resolved.parent)
    cfg.source = str(resolved)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a plain mapping (e.g. the config embedded in a checkpoint)."""
    cfg: Config = from_dict(Config, _deep_copy(data))
    check_values(cfg)
    return cfg


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
