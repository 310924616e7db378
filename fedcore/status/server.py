"""The status server behind ``[status] address``: the page, ``/status.json`` and ``/metrics``.

Standard library only (``http.server``), one thread per request, read-only: every route answers
from the :class:`~fedcore.status.board.StatusBoard`, never from the engine itself.

Routes (GET only)::

    /             the page (fedcore.status.page)            /status.json   the snapshot
    /fragment     ?since=VERSION&wait=SECONDS: the page's fragment once the snapshot is newer than
                  VERSION, or after SECONDS (at most 30): the page's long poll
    /metrics      Prometheus text format (fedcore.status.metrics)
    /style.css /app.js

Access (see :mod:`fedcore.config.status` for where it may listen): on a loopback address the
``Host`` header must name a loopback host (a web page elsewhere cannot read the page through DNS
rebinding); with a ``token`` every request must carry it (``Authorization: Bearer TOKEN``, or the
cookie that ``/?token=TOKEN`` sets before redirecting to ``/``); on any other address the server
speaks TLS only, with the coordinator's certificate. The bound URL goes to ``run_dir/status.address``.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fedcore.config.status import StatusSettings, is_loopback, split_address
from fedcore.status.board import StatusBoard
from fedcore.status.metrics import CONTENT_TYPE_LATEST, FederationCollector
from fedcore.status.page import SCRIPT, STYLE, render_fragment, render_page
from fedcore.transport.server import AddressInUse

log = logging.getLogger(__name__)

ADDRESS_FILE = "status.address"
COOKIE = "fedpsyau_status"
MAX_WAIT = 30.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a second coordinator on the same status port must fail, not share it

    def handle_error(self, request, client_address) -> None:  # a client that hangs up or speaks no TLS
        log.debug("status request from %s failed", client_address, exc_info=True)


class StatusServer:
    """Serve ``board`` on ``settings.address``; ``cert``/``key`` are used when it is not loopback."""

    def __init__(
        self,
        board: StatusBoard,
        settings: StatusSettings,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        run_dir: Path | None = None,
    ):
        from prometheus_client import CollectorRegistry

        parsed = split_address(settings.address)
        if parsed is None:
            raise ValueError(f"[status] address must look like HOST:PORT (got {settings.address!r})")
        host, port = parsed
        self.board, self.settings = board, settings
        self.loopback = is_loopback(host)
        self.tls = not self.loopback
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FederationCollector(board))
        try:
            self.httpd = _HTTPServer((host, port), _handler(self))
        except OSError:
            raise AddressInUse(settings.address, "[status] address") from None
        if self.tls:
            if cert is None or key is None:
                self.httpd.server_close()
                raise ValueError("a status page on a non-loopback address needs the server certificate and key")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(cert), str(key))
            # the handshake runs in the request's own thread (see _Handler.setup), never in the accept loop
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        wildcard = host in ("0.0.0.0", "")  # noqa: S104 - a comparison (which URL to print), not a bind
        shown = "127.0.0.1" if wildcard else ("[::1]" if host == "::" else (f"[{host}]" if ":" in host else host))
        self.url = f"{'https' if self.tls else 'http'}://{shown}:{self.port}/"
        if run_dir is not None:
            (Path(run_dir) / ADDRESS_FILE).write_text(self.url + "\n")
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="status-http", daemon=True
        )

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(srv: StatusServer):
    class Handler(_Handler):
        server_ref = srv

    return Handler


class _Handler(BaseHTTPRequestHandler):
    server_ref: StatusServer
    timeout = 15  # seconds a silent connection may hold a thread
    server_version = "fedpsyau-status"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def log_message(self, format, *args) -> None:
        log.debug("status %s %s", self.address_string(), format % args)

    # -- access --------------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        if not self.server_ref.loopback:
            return True
        host = (self.headers.get("Host") or "").rpartition(":")[0] or (self.headers.get("Host") or "")
        return is_loopback(host.strip("[]"))

    def _token_ok(self, query: dict) -> bool | str:
        token = self.server_ref.settings.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return True
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if COOKIE in cookie and hmac.compare_digest(cookie[COOKIE].value.encode(), token.encode()):
            return True
        if "token" in query and hmac.compare_digest(query["token"][0].encode(), token.encode()):
            return "set-cookie"
        return False

    # -- responses -----------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: HTTPStatus, text: str, extra: dict | None = None) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8", extra)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._host_ok():
            return self._text(HTTPStatus.MISDIRECTED_REQUEST, "this status page answers only to a loopback host name")
        ok = self._token_ok(query)
        if ok is False:
            return self._text(
                HTTPStatus.UNAUTHORIZED,
                "a token is required (Authorization: Bearer TOKEN)",
                {"WWW-Authenticate": 'Bearer realm="fedpsyau status"'},
            )
        if ok == "set-cookie":
            flags = "; Secure" if self.server_ref.tls else ""
            cookie = f"{COOKIE}={self.server_ref.settings.token}; Path=/; HttpOnly; SameSite=Strict{flags}"
            return self._text(HTTPStatus.SEE_OTHER, "see /", {"Location": url.path or "/", "Set-Cookie": cookie})
        board, refresh = self.server_ref.board, self.server_ref.settings.refresh
        if url.path == "/":
            return self._send(HTTPStatus.OK, render_page(board.current(), refresh).encode(), "text/html; charset=utf-8")
        if url.path == "/fragment":
            try:
                since = int(query.get("since", ["-1"])[0])
                wait = min(MAX_WAIT, max(0.0, float(query.get("wait", ["0"])[0])))
            except ValueError:
                return self._text(HTTPStatus.BAD_REQUEST, "since must be an integer and wait a number of seconds")
            snap = board.wait(since, wait)
            return self._send(HTTPStatus.OK, render_fragment(snap, refresh).encode(), "text/html; charset=utf-8")
        if url.path == "/status.json":
            return self._send(HTTPStatus.OK, json.dumps(board.current(), sort_keys=True).encode(), "application/json")
        if url.path == "/metrics":
            from prometheus_client import generate_latest

            return self._send(HTTPStatus.OK, generate_latest(self.server_ref.registry), CONTENT_TYPE_LATEST)
        if url.path == "/style.css":
            return self._send(HTTPStatus.OK, STYLE.encode(), "text/css; charset=utf-8")
        if url.path == "/app.js":
            return self._send(HTTPStatus.OK, SCRIPT.encode(), "text/javascript; charset=utf-8")
        return self._text(HTTPStatus.NOT_FOUND, "no such page: try /, /status.json or /metrics")

    do_HEAD = do_GET

    def _refuse(self) -> None:
        self._text(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: GET only", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse
