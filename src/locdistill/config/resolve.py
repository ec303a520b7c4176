"""What :func:`locdistill.config.load_config` does to a config beyond merging and validating it.

1. **Environment variables**: in any YAML string value (and ``--set`` value), ``${oc.env:VAR}`` is
   replaced by the variable's value and ``${oc.env:VAR,default}`` by the value or ``default`` when
   ``VAR`` is unset (OmegaConf's syntax). A value that is one interpolation and nothing else is then
   read as a YAML scalar, so ``epochs: ${oc.env:EPOCHS,12}`` is the integer 12. An unset variable
   without a default is an error naming the file, the key and the variable.
2. **Ultralytics data.yaml**: ``data.ultralytics: PATH`` fills ``data.train``, ``data.val`` (and
   ``data.test`` when the file has one) as YOLO-format splits: root, image folder or list, class
   names. ``model.head.num_classes`` is the number of names unless the config file you name (not
   its ``_base_`` files) or ``--set`` gives it; then the two must agree.
3. **Relative paths**: ``data.*.root``, ``data.ultralytics``, ``distill.teacher_config`` and
   ``distill.teacher_checkpoint`` resolve relative to the config file's folder when the path exists
   there, else they stay relative to the working directory. (Resolved paths are made absolute.)
4. ``--data-root DIR`` (:func:`set_data_root`) replaces the root of every split afterwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from locdistill.config.validation import ConfigError
from locdistill.config.yaml_io import parse_yaml

ENV_PATTERN = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,([^}]*))?\}")


def _substitute(text: str, key: str) -> Any:
    def value_of(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default.strip()
        raise ConfigError(
            f"{key}: environment variable {name} is not set "
            f"(write ${{oc.env:{name},DEFAULT}} to give a default)"
        )

    whole = ENV_PATTERN.fullmatch(text.strip())
    out = ENV_PATTERN.sub(value_of, text)
    if whole is not None:
        try:
            return parse_yaml(out) if out else ""
        except yaml.YAMLError:
            return out
    return out


def interpolate_env(data: Any, key: str = "") -> Any:
    """``data`` (a parsed YAML value) with every ``${oc.env:...}`` in its strings replaced."""
    if isinstance(data, dict):
        return {k: interpolate_env(v, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_env(v, f"{key}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and "${oc.env:" in data:
        return _substitute(data, key)
    return data


def beside(value: str, config_dir: Path | None) -> str:
    """``value`` relative to ``config_dir`` (made absolute) when it exists there, else unchanged."""
    if not value or config_dir is None:
        return value
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    candidate = config_dir / p
    return os.path.abspath(candidate) if candidate.exists() else value


def _section(raw: dict[str, Any], *keys: str) -> dict[str, Any]:
    node = raw
    for key in keys:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    return node


def _sets_num_classes(config_file: Path, overrides: list[str]) -> bool:
    """Whether the config file itself (not its ``_base_`` files) or ``--set`` gives num_classes."""
    own = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}  # read already by load_raw
    head = (own.get("model") or {}).get("head") if isinstance(own.get("model"), dict) else None
    in_file = isinstance(head, dict) and "num_classes" in head
    return in_file or any(o.split("=", 1)[0].strip() == "model.head.num_classes" for o in overrides)


def expand_ultralytics(raw: dict[str, Any], config_file: Path, overrides: list[str]) -> None:
    """Fill the splits of ``raw`` (merged, not yet validated) from its ``data.ultralytics`` file."""
    from locdistill.config.ultralytics import read_data_yaml

    data = raw.get("data") if isinstance(raw.get("data"), dict) else None
    if not data or not data.get("ultralytics"):
        return
    path = beside(str(data["ultralytics"]), config_file.parent)
    data["ultralytics"] = os.path.abspath(path)
    desc = read_data_yaml(path)
    for split in ("train", "val", "test"):
        if split not in desc.splits:
            continue
        node = data.get(split) if isinstance(data.get(split), dict) else {}
        node = dict(node)
        node.update(format="yolo", root=str(desc.root), ann_file="", img_dir=desc.splits[split])
        node["classes"] = list(desc.names)
        data[split] = node
    head = _section(raw, "model", "head")
    given = head.get("num_classes")
    if _sets_num_classes(config_file, overrides) and given != len(desc.names):
        raise ConfigError(
            f"model.head.num_classes is {given} but {path} names {len(desc.names)} classes "
            "(leave num_classes out to take it from the data.yaml)"
        )
    head["num_classes"] = len(desc.names)


def resolve_relative_paths(cfg: Any, config_dir: Path | None) -> None:
    """Apply rule 3 of the module docstring to a validated :class:`~locdistill.config.Config`."""
    for split in (cfg.data.train, cfg.data.val, cfg.data.test):
        if split is not None:
            split.root = beside(split.root, config_dir)
    if cfg.distill is not None:
        cfg.distill.teacher_config = beside(cfg.distill.teacher_config, config_dir)
        cfg.distill.teacher_checkpoint = beside(cfg.distill.teacher_checkpoint, config_dir)


def set_data_root(cfg: Any, root: str | Path | None) -> None:
    """``--data-root``: every split of ``cfg`` (train, val and test when set) reads from ``root``.

    Each split's ``ann_file`` and ``img_dir`` stay as they are, relative to the new root.
    """
    if root is None:
        return
    if not Path(root).is_dir():
        raise FileNotFoundError(f"--data-root: not a folder: {root}")
    for split in (cfg.data.train, cfg.data.val, cfg.data.test):
        if split is not None:
            split.root = str(root)
