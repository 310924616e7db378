"""client.toml's [privacy] ledger: a shared ledger path, resolved from the config file's folder."""

from __future__ import annotations

import pytest

from fedcore.common.errors import ConfigError
from fedcore.config.client import parse_client


def test_relative_ledger_path_is_taken_from_the_config_folder(tmp_path):
    cfg = parse_client(
        {"client": {"id": "alice"}, "privacy": {"ledger": "../ledgers/casme2.json"}},
        tmp_path / "a",
        insecure=True,
        check_files=False,
    )
    assert cfg.privacy["ledger"] == str((tmp_path / "ledgers" / "casme2.json").resolve())


def test_empty_ledger_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[privacy\] ledger must be a file path"):
        parse_client({"client": {"id": "alice"}, "privacy": {"ledger": ""}}, tmp_path, insecure=True, check_files=False)
