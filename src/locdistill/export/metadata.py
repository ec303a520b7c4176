"""Key/value metadata written into an exported ONNX file (both the GFL and the family exports)."""

from __future__ import annotations


def add_metadata(path: str, metadata: dict[str, str]) -> None:
    """Add ``metadata`` to the ONNX file at ``path`` (``metadata_props``), in place.

    Raises:
        ValueError: the onnx package is not installed.
    """
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "writing ONNX metadata needs the onnx package: pip install 'locdistill[export]'"
        ) from None
    proto = onnx.load(path)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)
