"""``main``: parse the arguments, run the sub-command, and turn expected user errors (a bad config key,
a missing file, unreadable data or weights) into one ``error: ...`` line and exit code 2 (``--debug``
shows the traceback instead)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from locdistill.cli.commands import (
    CommandUnavailable,
    cmd_analyze,
    cmd_benchmark,
    cmd_chain,
    cmd_convert,
    cmd_demo,
    cmd_export,
    cmd_inspect_data,
    cmd_plot,
    cmd_predict,
    cmd_test,
    cmd_train,
)
from locdistill.cli.parser import build_parser
from locdistill.cli.paths import sort_paths
from locdistill.cli.zoo import cmd_zoo

COMMANDS: dict[str, Callable[..., int]] = {
    "train": cmd_train,
    "chain": cmd_chain,
    "test": cmd_test,
    "predict": cmd_predict,
    "convert": cmd_convert,
    "demo": cmd_demo,
    "benchmark": cmd_benchmark,
    "export": cmd_export,
    "analyze": cmd_analyze,
    "plot": cmd_plot,
    "inspect-data": cmd_inspect_data,
    "zoo": cmd_zoo,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    import yaml

    from locdistill.config import ConfigError

    errors: list[type[BaseException]] = [
        ConfigError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
        CommandUnavailable,
    ]
    errors.append(yaml.YAMLError)  # a malformed --set value
    from locdistill.engine.train import NonFiniteLossError

    errors.append(NonFiniteLossError)
    from locdistill.models.backbones.weights import PretrainedWeightsError

    errors.append(PretrainedWeightsError)  # e.g. ImageNet weights while offline
    from locdistill.zoo import ZooError

    errors.append(ZooError)  # zoo:NAME unknown, or its download failed (offline, hash, truncated)
    try:
        from locdistill.data import BadImageError
        from locdistill.data.video import VideoError
        from locdistill.engine.predict import PredictError

        errors += [BadImageError, VideoError, PredictError]
    except ImportError:  # pragma: no cover - a partial installation
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``locdistill`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        sort_paths(args)  # [CONFIG] CKPT -> args.config (None: the stored one), args.checkpoint
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not isinstance(e, _user_errors()):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in message:
            message = f"{message}: {e.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 2
