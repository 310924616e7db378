"""Who has joined, who is alive, who refuses to train: the coordinator's client registry.

Not thread-safe on its own: the round engine calls it under its lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fedcore.transport.status import Busy

log = logging.getLogger(__name__)


@dataclass
class ClientInfo:
    id: str
    joined_at: float
    last_seen: float
    alive: bool = True
    exhausted: str = ""  # non-empty: refused for an exhausted privacy budget (why)
    privacy: dict[str, Any] = field(default_factory=dict)  # the last PrivacyReport, as a dict
    told_done: bool = False


class Registry:
    def __init__(self, max_clients: int, heartbeat_timeout: float):
        self.max_clients = max_clients
        self.heartbeat_timeout = heartbeat_timeout
        self.clients: dict[str, ClientInfo] = {}
        self.ever: set[str] = set()

    def join(self, client_id: str, now: float) -> ClientInfo:
        info = self.clients.get(client_id)
        if info is None:
            if len(self.clients) >= self.max_clients:
                raise Busy(f"the federation is full ({self.max_clients} clients); {client_id!r} refused")
            info = self.clients[client_id] = ClientInfo(client_id, now, now)
            self.ever.add(client_id)
            log.info("client %s joined (%d joined)", client_id, len(self.clients))
        else:
            self.seen(client_id, now)
        return info

    def __contains__(self, client_id: str) -> bool:
        return client_id in self.clients

    def seen(self, client_id: str, now: float) -> None:
        info = self.clients.get(client_id)
        if info is None:
            return
        info.last_seen = max(info.last_seen, now)
        if not info.alive:
            info.alive = True
            log.info("client %s is back", client_id)

    def refresh_all(self, now: float) -> None:
        """Treat every live client as just heard from (after the coordinator itself was busy)."""
        for info in self.clients.values():
            if info.alive:
                info.last_seen = max(info.last_seen, now)

    def expire(self, now: float) -> list[str]:
        """Mark clients silent for longer than the heartbeat timeout as dead; return them."""
        dead = []
        for info in self.clients.values():
            if info.alive and now - info.last_seen > self.heartbeat_timeout:
                info.alive = False
                dead.append(info.id)
                log.warning(
                    "client %s is dead: no message for %.1f s (timeout %.1f s)",
                    info.id,
                    now - info.last_seen,
                    self.heartbeat_timeout,
                )
        return dead

    def alive(self) -> list[str]:
        return sorted(c.id for c in self.clients.values() if c.alive)

    def eligible(self, members: frozenset[str] | None = None) -> list[str]:
        """Live clients that have not refused for an exhausted budget (and hold the mode's keys)."""
        return sorted(
            c.id for c in self.clients.values() if c.alive and not c.exhausted and (members is None or c.id in members)
        )

    def excluded(self) -> dict[str, str]:
        return {c.id: c.exhausted for c in self.clients.values() if c.exhausted}

    def next_expiry(self) -> float | None:
        times = [c.last_seen + self.heartbeat_timeout for c in self.clients.values() if c.alive]
        return min(times) if times else None
