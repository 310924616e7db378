"""Typed, validated configuration of the daemons, loaded from TOML (see the two modules)."""

from fedcore.config.client import ClientConfig, load_client_config, parse_client
from fedcore.config.coordinator import (
    CoordinatorConfig,
    load_coordinator_config,
    parse_coordinator,
    startup_summary,
)

__all__ = [
    "ClientConfig",
    "CoordinatorConfig",
    "load_client_config",
    "load_coordinator_config",
    "parse_client",
    "parse_coordinator",
    "startup_summary",
]
