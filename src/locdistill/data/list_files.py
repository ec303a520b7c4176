"""List files (one image id or path per line) as VOC ``ImageSets`` and YOLO / COCO split lists use them."""

from __future__ import annotations

from pathlib import Path

from locdistill.data.records import DataFormatError


def read_list_file(path: Path) -> list[str]:
    """Non-empty, non-comment (``#``) lines of a list file, stripped."""
    if not path.is_file():
        raise DataFormatError(f"list file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: cannot read list file: {e}") from None
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def resolve_listed_path(entry: str, root: Path, list_file: Path) -> Path:
    """An image path from a list file: absolute as is; else relative to the data ``root`` when it
    exists there, else relative to the list file's folder (``./x`` always is)."""
    p = Path(entry)
    if p.is_absolute():
        return p
    if entry.startswith("./"):
        return list_file.parent / p
    candidate = root / p
    return candidate if candidate.exists() else list_file.parent / p
