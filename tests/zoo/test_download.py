"""``zoo:NAME`` downloads from a local server: a good file is fetched once and then used from the cache
without the network; a truncated file, one with the wrong hash, a dropped or stalled connection, an
HTTP error and a closed port each give one line naming the URL and the path where a file downloaded by
hand is picked up, and leave nothing behind that could count as done."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from locdistill.zoo import ZooError, cache_path, fetch, resolve_checkpoint, zoo_entry
from locdistill.zoo import entry as zoo_table
from tests.zoo.conftest import FakeZoo


def _files(zoo_dir: Path) -> list[str]:
    return sorted(p.name for p in zoo_dir.iterdir()) if zoo_dir.is_dir() else []


def test_a_good_file_is_downloaded_once_then_read_from_the_cache(
    fake_zoo: FakeZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = resolve_checkpoint("zoo:tiny")
    assert (
        path
        == tmp_path
        / "torch"
        / "hub"
        / "checkpoints"
        / f"tiny_good_20240101-{fake_zoo.payload.sha256[:8]}.pth"
    )
    assert path.read_bytes() == fake_zoo.payload.data
    assert _files(path.parent) == [path.name]  # no .partial left
    assert len(fake_zoo.server.hits) == 1 and "tiny_good" in capsys.readouterr().err  # the progress bar
    assert resolve_checkpoint("zoo:tiny") == path and len(fake_zoo.server.hits) == 1  # no request
    assert resolve_checkpoint(path) == path  # a plain path stays as it is


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("truncated", r"the transfer stopped after \d+ of \d+ bytes"),
        ("wrong", r"the downloaded file's sha256 starts with [0-9a-f]{8}, not [0-9a-f]{8}"),
        ("dropped", r"the connection dropped \(Connection reset by peer\)|the transfer stopped after"),
        ("missing", r"HTTP 404"),
        ("offline", r"no connection: .*refused"),
    ],
)
def test_a_failed_download_says_where_a_hand_downloaded_file_goes(
    fake_zoo: FakeZoo, mode: str, reason: str
) -> None:
    entry = zoo_entry(f"zoo:tiny-{mode}")
    dest = cache_path(entry)
    with pytest.raises(ZooError, match=reason) as info:
        resolve_checkpoint(f"zoo:tiny-{mode}", progress=False)
    message = str(info.value)
    assert "\n" not in message and entry.url in message and f"put it at {dest} " in message
    assert not dest.exists() and _files(dest.parent) == []  # neither the file nor a .partial
    if mode != "offline":
        assert fake_zoo.server.hits == [f"/{mode}/{dest.name}"]


def test_a_stalled_transfer_times_out(fake_zoo: FakeZoo) -> None:
    entry = zoo_entry("zoo:tiny-stalled")
    with pytest.raises(ZooError, match=r"timed out \(no data for 0.5 s\)") as info:
        fetch(entry, progress=False, timeout=0.5)
    assert str(cache_path(entry)) in str(info.value)
    assert _files(cache_path(entry).parent) == []


def test_a_partial_file_never_counts_and_a_hand_placed_file_does(
    fake_zoo: FakeZoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = zoo_entry("zoo:tiny")  # the same file name as the good entry, with nobody listening
    offline = dataclasses.replace(good, name="tiny-off", url=fake_zoo.url("offline", good.file_name))
    monkeypatch.setattr(zoo_table, "_TABLE", (*zoo_table.zoo_entries(), offline))
    dest = cache_path(offline)
    dest.parent.mkdir(parents=True)
    (dest.parent / f"{dest.name}.0123456789ab.partial").write_bytes(fake_zoo.payload.data)  # complete, yet
    with pytest.raises(ZooError, match="no connection"):
        resolve_checkpoint("zoo:tiny-off", progress=False)
    shutil.copyfile(dest.parent / f"{dest.name}.0123456789ab.partial", dest)  # "downloaded by hand"
    assert resolve_checkpoint("zoo:tiny-off") == dest and fake_zoo.server.hits == []


def test_a_wrong_file_in_the_cache_is_refused_and_kept(fake_zoo: FakeZoo) -> None:
    dest = cache_path(zoo_entry("zoo:tiny"))
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the weights")
    with pytest.raises(ZooError, match=r"is there but its sha256 starts with [0-9a-f]{8}, not .*delete it"):
        resolve_checkpoint("zoo:tiny")
    assert dest.read_bytes() == b"not the weights" and fake_zoo.server.hits == []


def test_the_mirror_variable_replaces_the_url(fake_zoo: FakeZoo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCDISTILL_ZOO_URL", f"{fake_zoo.base}/good/")
    path = resolve_checkpoint("zoo:tiny-offline", progress=False)  # its own URL has nobody listening
    assert path.read_bytes() == fake_zoo.payload.data
    assert fake_zoo.server.hits == [f"/good/{path.name}"]


def test_an_unknown_name_lists_the_known_ones(fake_zoo: FakeZoo) -> None:
    with pytest.raises(ZooError, match=r"unknown zoo checkpoint 'nope' .*tiny, tiny-truncated"):
        resolve_checkpoint("zoo:nope")
