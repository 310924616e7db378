"""The status server: routes, the loopback/TLS/token rule, and refusals of a bad [status]."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time

import pytest
from fedcore_testkit import TinyWorkload, config, make_engine

from fedcore.common.errors import ConfigError
from fedcore.config.status import StatusSettings, status_problems
from fedcore.status.board import StatusBoard
from fedcore.status.commands import fetch_status
from fedcore.status.server import ADDRESS_FILE, StatusServer
from fedcore.transport.server import AddressInUse

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def board(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    b = StatusBoard(engine, tmp_path, interval=0.05).start()
    yield b
    b.close()


def _serve(board, tmp_path, address="127.0.0.1:0", token="", pki=None):
    cert = key = None
    if pki is not None:
        cert, key = pki.folder / "server.pem", pki.folder / "server.key"
    return StatusServer(
        board, StatusSettings(address=address, token=token, refresh=1.0), cert=cert, key=key, run_dir=tmp_path
    ).start()


def _get(port, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def test_every_route_answers_read_only_with_a_strict_content_policy(board, tmp_path):
    srv = _serve(board, tmp_path)
    try:
        assert (tmp_path / ADDRESS_FILE).read_text().strip() == srv.url == f"http://127.0.0.1:{srv.port}/"
        status, headers, body = _get(srv.port, "/")
        assert status == 200 and 'id="status"' in body and "app.js" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
        status, _, body = _get(srv.port, "/status.json")
        assert status == 200 and json.loads(body)["phase"] == "joining"
        status, headers, body = _get(srv.port, "/metrics")
        assert status == 200 and "fedpsyau_round 0.0" in body and headers["Content-Type"].startswith("text/plain")
        assert _get(srv.port, "/app.js")[0] == _get(srv.port, "/style.css")[0] == 200
        assert _get(srv.port, "/nope")[0] == 404
        assert _get(srv.port, "/", method="POST")[0] == 405
        assert _get(srv.port, "/", {"Host": "evil.example:80"})[0] == 421  # DNS rebinding
        assert _get(srv.port, "/fragment?since=x")[0] == 400
    finally:
        srv.close()


def test_the_fragment_is_held_until_the_snapshot_changes(board, tmp_path):
    srv = _serve(board, tmp_path)
    try:
        version = board.current()["version"]
        t0 = time.monotonic()
        status, _, body = _get(srv.port, f"/fragment?since={version}&wait=0.6")
        assert status == 200 and time.monotonic() - t0 >= 0.5 and f'data-version="{version}"' in body
        engine = board.engine
        timer = threading.Timer(0.3, lambda: engine.join("alice", engine.header()))
        timer.start()
        t0 = time.monotonic()
        status, _, body = _get(srv.port, f"/fragment?since={version}&wait=20")
        assert time.monotonic() - t0 < 10 and 'data-client="alice"' in body
        assert f'data-version="{version + 1}"' in body
    finally:
        srv.close()


def test_a_token_is_required_by_header_or_the_cookie_it_sets(board, tmp_path):
    srv = _serve(board, tmp_path, token=TOKEN)
    try:
        status, headers, _ = _get(srv.port, "/status.json")
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
        assert _get(srv.port, "/metrics", {"Authorization": "Bearer wrong-token-000000000"})[0] == 401
        assert _get(srv.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, headers, _ = _get(srv.port, f"/?token={TOKEN}")
        assert status == 303 and headers["Location"] == "/" and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert _get(srv.port, "/", {"Cookie": cookie})[0] == 200
    finally:
        srv.close()


def test_a_network_address_is_served_over_tls_with_the_token_only(board, tmp_path, pki):
    srv = _serve(board, tmp_path, address="0.0.0.0:0", token=TOKEN, pki=pki)
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        snap = fetch_status(srv.url, TOKEN, pki.folder / "ca.pem")
        assert snap["federation"] == board.current()["federation"]
        with pytest.raises(ValueError, match="HTTP 401"):
            fetch_status(srv.url, "", pki.folder / "ca.pem")
        with pytest.raises(ssl.SSLError):  # a certificate not from the federation's CA
            fetch_status(srv.url, TOKEN, None)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            _get(srv.port, "/status.json")  # plain HTTP gets no answer
    finally:
        srv.close()


def test_a_status_port_in_use_is_refused_with_the_option_name(board, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(AddressInUse, match=r"\[status\] address: cannot listen on 127\.0\.0\.1:\d+"):
            _serve(board, tmp_path, address=f"127.0.0.1:{s.getsockname()[1]}")


@pytest.mark.parametrize(
    "table, insecure, needle",
    [
        ({"address": "0.0.0.0:8080"}, False, "needs a [status] token"),
        ({"address": "0.0.0.0:8080", "token": TOKEN}, True, "needs TLS (not --insecure)"),
        ({"address": "192.168.1.5:8080"}, True, "needs a [status] token and TLS"),
        ({"address": "127.0.0.1:8080", "token": "short"}, False, "token must have at least 16 characters"),
        ({"address": "localhost"}, False, "must look like HOST:PORT"),
        ({"address": "127.0.0.1:8080", "refresh": 0}, False, "refresh must be > 0"),
    ],
)
def test_a_bad_status_table_is_refused_with_the_reason(tmp_path, table, insecure, needle):
    import re

    assert any(needle in p for p in status_problems(StatusSettings(**table), insecure))
    with pytest.raises(ConfigError, match=re.escape(needle)):  # the coordinator config refuses it too (insecure)
        config(tmp_path, status=table)


def test_loopback_and_a_tokened_tls_network_address_are_accepted():
    assert status_problems(StatusSettings(address="127.0.0.1:8080"), tls_insecure=True) == []
    assert status_problems(StatusSettings(address="[::1]:8080"), tls_insecure=True) == []
    assert status_problems(StatusSettings(address="0.0.0.0:8443", token=TOKEN), tls_insecure=False) == []
    assert status_problems(StatusSettings(), tls_insecure=True) == []  # off
