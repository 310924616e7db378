"""HKDF-SHA256 (the recipes layer under every SecAgg+ key) against RFC 5869's known answers."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from fedcore.crypto.recipes import hkdf

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc5869_hkdf_sha256.json").read_text())["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_hkdf_matches_rfc5869_known_answers(case):
    ikm, salt, info = (bytes.fromhex(case[k]) for k in ("ikm", "salt", "info"))
    # extract step (PRK = HMAC-SHA256(salt, IKM); an empty salt means HashLen zeros)
    assert hmac.new(salt or bytes(32), ikm, hashlib.sha256).hexdigest() == case["prk"]
    assert hkdf(ikm, info, case["length"], salt=salt or None).hex() == case["okm"]


def test_hkdf_domain_labels_separate_keys():
    secret = b"\x01" * 32
    assert hkdf(secret, b"fedpsyau/secagg/v1/mask") != hkdf(secret, b"fedpsyau/secagg/v1/channel")
