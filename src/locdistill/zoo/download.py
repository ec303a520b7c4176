"""Download one file over HTTP(S) into a cache, checked against a SHA-256 prefix, never half-written.

The bytes stream into ``<dest>.<random>.partial`` beside ``dest`` (with a tqdm progress bar on stderr)
while their SHA-256 is computed; only a complete file (as many bytes as ``Content-Length`` announced)
whose digest starts with the expected prefix is renamed to ``dest`` (``os.replace``, atomic). Any
failure removes the ``.partial`` file, so ``dest`` either does not exist or is the right file. This is
the contract of ``torch.hub.download_url_to_file`` with ``check_hash``, with one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 16
"""Bytes read per block (64 KiB)."""


class DownloadError(OSError):
    """A download that did not give the expected file; the message says why, in a few words."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_checked(
    url: str, dest: str | Path, sha256_prefix: str, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` when its SHA-256 starts with ``sha256_prefix``.

    Args:
        url: ``http://`` or ``https://`` address.
        dest: final path; its folder is created.
        sha256_prefix: lowercase hex digits the file's SHA-256 must start with.
        progress: show a tqdm bar (bytes) on stderr.
        timeout: seconds any one network operation may wait (connect, each read).

    Raises:
        DownloadError: offline, an HTTP error, a short or dropped transfer, a time-out or a wrong hash;
            the message is the reason only (the caller adds the URL and where the file belongs).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:12]}.partial")
    request = urllib.request.Request(url, headers={"User-Agent": "locdistill"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response.headers.get("Content-Length"))
            received, digest = _stream(response, partial, total, dest.name, progress)
        if total is not None and received != total:
            raise DownloadError(f"the transfer stopped after {received} of {total} bytes")
        if received == 0:
            raise DownloadError("the server sent an empty file")
        if not digest.startswith(sha256_prefix):
            raise DownloadError(
                f"the downloaded file's sha256 starts with {digest[: len(sha256_prefix)]}, not "
                f"{sha256_prefix} (a different or damaged file)"
            )
        os.replace(partial, dest)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:  # offline, refused, unknown host
        raise DownloadError(f"no connection: {e.reason}") from None
    except TimeoutError:
        raise DownloadError(f"timed out (no data for {timeout:g} s)") from None
    except ConnectionError as e:
        raise DownloadError(f"the connection dropped ({e.strerror or type(e).__name__})") from None
    except http.client.HTTPException as e:  # IncompleteRead, a malformed response
        raise DownloadError(f"the transfer failed ({type(e).__name__}: {e})") from None
    except DownloadError:
        raise
    except OSError as e:  # a socket error mid-transfer, or the disk (full, read-only)
        raise DownloadError(f"{type(e).__name__}: {e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return dest


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(
    response: http.client.HTTPResponse, partial: Path, total: int | None, name: str, progress: bool
) -> tuple[int, str]:
    """Copy the response body into ``partial``; ``(bytes received, hex sha256)``."""
    digest = hashlib.sha256()
    received = 0
    with (
        open(partial, "wb") as f,
        tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress
        ) as bar,
    ):
        while block := response.read(CHUNK):
            f.write(block)
            digest.update(block)
            received += len(block)
            bar.update(len(block))
    return received, digest.hexdigest()
