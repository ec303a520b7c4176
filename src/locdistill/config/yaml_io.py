"""YAML as the config reads it: PyYAML's safe loader, with YAML 1.2 floats.

PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent (``5.0e-4``): ``5e-4``,
``1E3`` and ``1e-3`` come back as strings, which a float field then rejects. :func:`parse_yaml` reads
them as numbers, in config files and in ``--set`` values alike. Used by :mod:`locdistill.config` and
:mod:`locdistill.config.resolve`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from locdistill.config.validation import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``5e-4``, ``1E3``, ``+1e-2``, ``.5``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """A YAML document or scalar, parsed safely with YAML 1.2 floats (``5e-4`` is ``0.0005``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``{}`` when empty); :class:`ConfigError` naming the file
    when it is missing, not YAML, or not a mapping."""
    try:
        with open(path, encoding="utf-8") as f:
            data = parse_yaml(f.read())
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, got {type(data).__name__}"
        )
    return data
