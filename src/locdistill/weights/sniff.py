"""Say what a file is when it is not a weights file a reader can open, from its first bytes.

:func:`describe_unreadable` is the error path of every weight reader: a Git LFS pointer, an empty or
text file, an HTML page saved instead of a download, a raw Python pickle, a truncated zip or a corrupt
safetensors file each get one line that names the file and what it is. It reads at most the first
4 KiB, a zip's central directory or a safetensors header, and depends on nothing else in locdistill.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

_SAMPLE = 4096
_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"
_TORCH_LEGACY_PREFIX = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickled torch MAGIC_NUMBER
_MAX_SAFETENSORS_HEADER = 100 << 20  # the limit safetensors itself enforces
_SIGNATURES = (
    (b"\x93NUMPY", "a numpy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras/TensorFlow weights?)"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def describe_unreadable(path: str | Path) -> str | None:
    """One line naming ``path`` and saying what it is, when it is not a readable torch checkpoint (zip or
    legacy ``torch.save`` format) or safetensors file; ``None`` when it looks like one (the reader's own
    error then stands), e.g. "x.pth is a Git LFS pointer (134 bytes), not the weights: run git lfs pull".
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(_SAMPLE)
    except OSError as e:
        return f"{path} cannot be read: {e.strerror or e}"
    if size == 0:
        return f"{path} is empty (0 bytes), not the weights"
    if head.startswith(_LFS_PREFIX):
        return f"{path} is a Git LFS pointer ({size} bytes), not the weights: run git lfs pull"
    if head.startswith(b"PK"):
        return _describe_zip(path, size)
    if head.startswith(_TORCH_LEGACY_PREFIX):
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            f"{path} is a raw Python pickle (protocol {head[1]}, {size} bytes), not a torch.save checkpoint "
            "or safetensors file: save the weights with torch.save or safetensors"
        )
    if len(head) >= 262 and head[257:262] == b"ustar":
        return f"{path} is a tar archive ({size} bytes), not the weights: extract it"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f"{path} is {what} ({size} bytes), not the weights"
    text = _as_text(head)  # a safetensors file starts with a binary length, never text
    if text is not None:
        if text.lstrip().lower().startswith(("<!doctype html", "<html")):
            return f"{path} is an HTML page ({size} bytes), not the weights: the download returned a web page"
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        first = first if len(first) <= 60 else first[:57] + "..."
        return f"{path} is a text file ({size} bytes, starting {first!r}), not the weights"
    safetensors = _describe_safetensors(path, size, head)
    if safetensors is not None or path.suffix == ".safetensors":
        return safetensors
    return f"{path} is not a torch or safetensors weights file (starts with bytes {head[:8].hex(' ')})"


def _describe_zip(path: Path, size: int) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{path} is a truncated or corrupt zip (torch.save) file ({size} bytes): get or save it again"
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return f"{path} is a zip archive ({size} bytes) without a torch checkpoint in it (no data.pkl)"
    if path.suffix == ".safetensors":
        return f"{path} is a torch.save (zip) checkpoint, not safetensors: name it .pth"
    return None


def _describe_safetensors(path: Path, size: int, head: bytes) -> str | None:
    """A problem with a file that is (by name or by content) safetensors; ``None`` when it is fine or,
    for a file not named ``.safetensors``, when it does not look like safetensors at all."""
    named = path.suffix == ".safetensors"
    if size < 8:
        return f"{path} is a corrupt safetensors file: {size} bytes, shorter than its 8-byte header size"
    (header_len,) = struct.unpack("<Q", head[:8])
    looks_like = head[8:9] == b"{"
    if not named and not looks_like:
        return None
    problem = None
    if header_len > min(size - 8, _MAX_SAFETENSORS_HEADER):
        problem = f"its header claims {header_len} bytes but the file has {size}"
    else:
        try:
            with open(path, "rb") as f:
                f.seek(8)
                header = json.loads(f.read(header_len))
            if not isinstance(header, dict):
                raise ValueError("not a JSON object")
            ends = [
                int(v["data_offsets"][1])
                for k, v in header.items()
                if k != "__metadata__" and isinstance(v, dict)
            ]
            data = size - 8 - header_len
            if max(ends, default=0) != data:
                problem = f"its tensors end at byte {max(ends, default=0)} of a {data}-byte data section"
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as e:
            problem = f"its header is not valid JSON metadata ({type(e).__name__})"
    if problem is None:
        return None if named else f"{path} is a safetensors file by its content: name it .safetensors"
    what = "a corrupt safetensors file" if named else "a corrupt safetensors-like file"
    return f"{path} is {what} ({size} bytes): {problem}; get or save it again"


def _as_text(head: bytes) -> str | None:
    """``head`` decoded when it is UTF-8 text of printable characters and white space, else ``None``."""
    for cut in range(4):  # a multi-byte character may be split at the end of the sample
        try:
            text = head[: len(head) - cut].decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            continue
        return text if all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text) else None
    return None
