"""A coordinator that substitutes a neighbour's advertised keys, run against real SecAgg+ client daemons.

Used by ``test_key_signatures.py``. The signature and certificate fields of the advertised keys are
a change to ``protos/fedpsyau/v1/secagg.proto`` (:data:`PROTO_CHANGE`); while the committed
generated code lacks them, :func:`run_patched` generates code with the change into a temporary
folder and runs :func:`substitution_scenario` in a fresh interpreter that uses it, so the test
exercises the client and server code that ships, through the messages the change defines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: (old, new) text of protos/fedpsyau/v1/secagg.proto: signature and certificate on both messages
PROTO_CHANGE = [
    (
        "  bytes mask_public_key = 2;     // s_pk: 32 bytes, agrees the pairwise masks\n}",
        (
            "  bytes mask_public_key = 2;     // s_pk: 32 bytes, agrees the pairwise masks\n"
            "  bytes signature = 3;           // certificate key over fedcore.secagg.auth.keys_transcript\n"
            "  bytes certificate_pem = 4;     // the client's certificate from the federation CA\n}"
        ),
    ),
    (
        "  bytes mask_public_key = 3;\n}",
        (
            "  bytes mask_public_key = 3;\n"
            "  bytes signature = 4;        // relayed from the neighbour's SecAggAdvertiseKeys\n"
            "  bytes certificate_pem = 5;  // relayed likewise; the receiving client verifies both\n}"
        ),
    ),
]
ROOT = Path(__file__).resolve().parents[3]
CLIENTS = ("alice", "bob", "carol", "dave")


class _Known:
    """A trainer whose update is a fixed vector of weight 1."""

    def __init__(self, vector):
        self.vector = vector

    def fit(self, params, spec, round, config, statistics):
        import numpy as np

        from fedcore.common.workload import FitResult, PrivacyState

        return FitResult(np.asarray(params, np.float64) + self.vector, 1, {}, PrivacyState(enabled=False))

    def evaluate(self, params, spec, round, config, statistics):
        from fedcore.common.workload import EvalResult

        return EvalResult(1, {})

    def statistics(self, config):
        return None


def substitution_scenario(folder: Path) -> dict:
    """Four clients with certificates from their federation's CA, run by the daemons' engine and
    client daemons over the in-memory transport (federations provisioned under a new folder in
    ``folder``): an honest round completes; then a coordinator that relays its own keys as bob's
    makes alice abort with PeerKeyRefused before she derives any key from them. Returns what
    happened (JSON-able)."""
    import tempfile

    import numpy as np
    from google.protobuf import any_pb2

    from fedcore.common.stages import Stage
    from fedcore.crypto.recipes import new_keypair
    from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
    from fedcore.secagg import auth
    from fedcore.secagg.state import SecAggStage
    from fedcore.simulation_memory import memory_federation

    work = Path(tempfile.mkdtemp(prefix="signed-", dir=folder))

    def federation(name: str, tamper=None):
        trainers = {c: _Known(np.full(3, 0.1 * (i + 1))) for i, c in enumerate(CLIENTS)}
        return memory_federation(
            len(CLIENTS),
            1,
            work / name,
            aggregation="secagg",
            client_ids=CLIENTS,
            workload="fedcore.examples.updates:workload",
            workload_settings={"size": 3},
            trainers=trainers,
            tamper=tamper,
        )

    out = {"wire_support": auth.WIRE_SUPPORT}
    fed = federation("honest")
    out["honest_rc"] = fed.run()
    out["honest_sum"] = fed.engine.mode.result().weighted_sum.tolist()

    def substitute(stage, cid, direction, data):
        """The coordinator's own keys in place of bob's, in what alice is sent at share-keys."""
        if direction != "down" or stage != Stage.SECAGG_SHARE_KEYS or cid != "alice":
            return data
        body = any_pb2.Any.FromString(data)
        task = spb.SecAggShareKeysTask()
        body.Unpack(task)
        for peer in task.neighbours:
            if peer.client_id == "bob":
                peer.channel_public_key, peer.mask_public_key = new_keypair()[1], new_keypair()[1]
                out["substituted"] = True
        body.Pack(task)
        return body.SerializeToString()

    fed = federation("substituted", tamper=substitute)
    assert fed.run_until(lambda e: e.state.stage is not None and e.state.stage.stage == Stage.SECAGG_SHARE_KEYS)
    out["signed"] = sorted(fed.engine.mode.r.signed)
    alice = fed.daemons["alice"].handlers.mode
    refusals: list[Exception] = []
    handle = alice.handle

    def watched(*args, **kwargs):  # what alice's daemon runs into (it logs the refusal and skips the task)
        try:
            return handle(*args, **kwargs)
        except Exception as exc:
            refusals.append(exc)
            raise

    alice.handle = watched
    assert fed.run_until(lambda e: bool(refusals) or e.finished)
    fed.close()
    exc = refusals[0] if refusals else None
    out["refused"] = str(exc) if isinstance(exc, auth.PeerKeyRefused) else None
    out["refusal_type"] = type(exc).__name__ if exc is not None else None
    out["substituted"] = out.get("substituted", False)
    out["alice_stage"] = str(alice.state.stage)
    out["alice_channel_keys"] = sorted(alice.state.channel_keys)
    out["aborted"] = alice.state.stage == SecAggStage.ABORTED
    return out


def run_patched(tmp: Path, folder: Path) -> dict:
    """:func:`substitution_scenario` in a fresh interpreter whose secagg_pb2 has :data:`PROTO_CHANGE`."""
    protos = tmp / "protos"
    src = ROOT / "protos" / "fedpsyau" / "v1"
    (protos / "fedpsyau" / "v1").mkdir(parents=True)
    for proto in src.glob("*.proto"):
        text = proto.read_text()
        if proto.name == "secagg.proto":
            for old, new in PROTO_CHANGE:
                assert text.count(old) == 1, f"secagg.proto changed: cannot apply {old!r}"
                text = text.replace(old, new)
        (protos / "fedpsyau" / "v1" / proto.name).write_text(text)
    script = f"""
import importlib.util, json, sys
from pathlib import Path
import fedcore.proto.generate as gen
gen.PROTO_ROOT = Path({str(protos)!r})
out = Path({str(tmp / "gen")!r})
out.mkdir(parents=True, exist_ok=True)
gen.generate(out)
import fedcore.proto.fedpsyau.v1.federation_pb2  # the unchanged one first
name = "fedcore.proto.fedpsyau.v1.secagg_pb2"
spec = importlib.util.spec_from_file_location(name, out / "fedpsyau" / "v1" / "secagg_pb2.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
import fedcore.proto.fedpsyau.v1 as pkg
pkg.secagg_pb2 = module
import secagg_signed_kit as kit
print("RESULT " + json.dumps(kit.substitution_scenario(Path({str(folder)!r}))))
"""
    env_path = str(Path(__file__).resolve().parent)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=str(ROOT),
        env={**_env(), "PYTHONPATH": env_path},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"the patched run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT ") :])


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
