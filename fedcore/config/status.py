"""``[status]`` in ``coordinator.toml``: the live status page and the Prometheus ``/metrics`` endpoint.

Off by default. The rule for where it may listen (checked with the rest of the config):

- a loopback address (``127.0.0.1:8080``, ``[::1]:8080``, ``localhost:8080``): plain HTTP,
  reachable only from this machine (use an SSH tunnel to look from elsewhere); a ``token``,
  if set, is required there too;
- any other address (``0.0.0.0:8443``, a LAN address): only with a ``token`` of at least
  :data:`MIN_TOKEN` characters **and** TLS on, and then it is served over HTTPS with the
  coordinator's own ``[tls] cert``/``key``; every request must carry the token
  (``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once in a browser, which sets a cookie).
  Without both, the config is refused with the exact reason.

The page shows the federation's state, never an update, a key or a sample; what it does show
(client ids, epsilon spent, metrics) is still the federation's business, hence the rule.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: shortest token accepted (a random 16-character token; `python -c "import secrets; print(secrets.token_urlsafe(24))"`)
MIN_TOKEN = 16


@dataclass(frozen=True)
class StatusSettings:
    address: str = ""  # HOST:PORT of the page and /metrics; "" = off; port 0 = any free port
    token: str = ""  # bearer token; required (with TLS) for a non-loopback address
    refresh: float = 5.0  # the page re-renders at least this often (s), and at once on a change

    @property
    def enabled(self) -> bool:
        return bool(self.address)


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` / ``[v6]:PORT``, or None when it does not parse."""
    host, sep, port = address.rpartition(":")
    if not (host and sep and port.isdigit() and int(port) < 65536):
        return None
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def status_problems(s: StatusSettings, tls_insecure: bool) -> list[str]:
    """Every problem with ``[status]`` (empty when it is off or fine)."""
    problems: list[str] = []
    if not s.refresh > 0:
        problems.append(f"[status] refresh must be > 0 seconds (got {s.refresh})")
    if s.token and len(s.token) < MIN_TOKEN:
        problems.append(f"[status] token must have at least {MIN_TOKEN} characters (got {len(s.token)})")
    if not s.address:
        return problems
    parsed = split_address(s.address)
    if parsed is None:
        problems.append(f"[status] address must look like HOST:PORT, e.g. 127.0.0.1:8080 (got {s.address!r})")
        return problems
    host, _ = parsed
    if not is_loopback(host):
        missing = [
            what
            for what, ok in (("a [status] token", bool(s.token)), ("TLS (not --insecure)", not tls_insecure))
            if not ok
        ]
        if missing:
            problems.append(
                f"[status] address {s.address!r} is not a loopback address: a status page on a network "
                f"address needs {' and '.join(missing)} (it is then served over HTTPS with [tls] cert); "
                f"or listen on 127.0.0.1:PORT and look through an SSH tunnel"
            )
    return problems
