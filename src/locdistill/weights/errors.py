"""The one error type of weight I/O: every file that cannot be read, or does not fit, raises it."""

from __future__ import annotations


class WeightsError(ValueError):
    """A weights file that cannot be read safely, holds no usable weights, or does not fit the model.

    The message is one line naming the file and, where it applies, the keys at fault.
    """


class WeightsFileNotFoundError(WeightsError, FileNotFoundError):
    """The weights file does not exist (also a :class:`FileNotFoundError`)."""
