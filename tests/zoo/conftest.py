"""A fake zoo served from 127.0.0.1: a tiny mmdetection-format GFL checkpoint, and URLs that serve it
whole, cut short, with other bytes, dropped mid-file, stalled, 404, or nobody listening. The torch hub
cache is a temporary folder (``TORCH_HOME``); nothing leaves the machine."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from locdistill.config import dump_config
from locdistill.models.detectors.gfl import build_gfl
from locdistill.zoo import ZooEntry
from locdistill.zoo import entry as zoo_table
from tests.helpers import tiny_config
from tests.weights.test_mmdet_import import to_mmdet_keys

MODES = ("good", "truncated", "wrong", "dropped", "stalled", "missing", "offline")


@dataclass
class Payload:
    """The checkpoint the fake zoo serves: its bytes, SHA-256, the config it loads into, its model."""

    data: bytes
    sha256: str
    config: Path
    model: torch.nn.Module


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    tmp = tmp_path_factory.mktemp("zoo_payload")
    cfg = tiny_config(tmp, ["model.test.score_thr=0.0"])
    torch.manual_seed(0)
    model = build_gfl(cfg.model).eval()
    ckpt = {"meta": {"epoch": 12, "mmdet_version": "2.25.0"}, "state_dict": to_mmdet_keys(model.state_dict())}
    torch.save(ckpt, tmp / "tiny_mmdet.pth")
    dump_config(cfg, tmp / "tiny_config.yaml")
    data = (tmp / "tiny_mmdet.pth").read_bytes()
    return Payload(data, hashlib.sha256(data).hexdigest(), tmp / "tiny_config.yaml", model)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)
        mode = self.path.strip("/").split("/")[0]
        body = self.server.wrong_body if mode == "wrong" else self.server.body
        if mode not in MODES or mode == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode in ("good", "wrong"):
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if mode == "dropped":  # reset the connection (RST) mid-file
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif mode == "stalled":
            self.server.release.wait(20)
        # truncated: the response ends cleanly with half of the announced Content-Length

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = body
        self.wrong_body = bytes(reversed(body))  # as long as the real file, other bytes
        self.hits: list[str] = []
        self.release = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the dropped connection's handler errors are expected


@dataclass
class FakeZoo:
    """The running server (``hits``: the paths requested) and the base URL of each mode."""

    server: _Server
    base: str
    closed_port: int
    payload: Payload

    def url(self, mode: str, file_name: str) -> str:
        if mode == "offline":
            return f"http://127.0.0.1:{self.closed_port}/{file_name}"
        return f"{self.base}/{mode}/{file_name}"

    def entry(self, mode: str, name: str | None = None, file_name: str | None = None) -> ZooEntry:
        prefix = self.payload.sha256[:8]
        return ZooEntry(
            name=name or f"tiny-{mode}",
            kind="gfl",
            box_ap=1.0,
            url=self.url(mode, file_name or f"tiny_{mode}_20240101-{prefix}.pth"),
            sha256_prefix=prefix,
            mmdet_config="configs/gfl/tiny.py",
            config=str(self.payload.config),
        )


@pytest.fixture(scope="session")
def _server(payload: Payload) -> Iterator[_Server]:
    server = _Server(payload.data)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_zoo(_server: _Server, payload: Payload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeZoo:
    """The fake zoo as the table (``zoo:tiny`` is the good file, ``zoo:tiny-<mode>`` each failure), the
    torch hub cache in ``tmp_path/torch``, no mirror."""
    host, port = _server.server_address[:2]
    zoo = FakeZoo(_server, f"http://{host!s}:{port}", _closed_port(), payload)
    entries = [zoo.entry("good", name="tiny"), *(zoo.entry(m) for m in MODES if m != "good")]
    monkeypatch.setattr(zoo_table, "_TABLE", tuple(entries))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LOCDISTILL_ZOO_URL", raising=False)
    _server.hits.clear()
    return zoo
