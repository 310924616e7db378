"""A coordinator that substitutes a neighbour's advertised keys, run against real SecAgg+ clients.

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
    ("  bytes mask_public_key = 2;     // s_pk: 32 bytes, agrees the pairwise masks\n}",
     ("  bytes mask_public_key = 2;     // s_pk: 32 bytes, agrees the pairwise masks\n"
     "  bytes signature = 3;           // certificate key over fedcore.secagg.auth.keys_transcript\n"
     "  bytes certificate_pem = 4;     // the client's certificate from the federation CA\n}")),
    ("  bytes mask_public_key = 3;\n}",
     ("  bytes mask_public_key = 3;\n"
     "  bytes signature = 4;        // relayed from the neighbour's SecAggAdvertiseKeys\n"
     "  bytes certificate_pem = 5;  // relayed likewise; the receiving client verifies both\n}")),
]
ROOT = Path(__file__).resolve().parents[3]
CLIENTS = ("alice", "bob", "carol", "dave")


def substitution_scenario(folder: Path) -> dict:
    """Four clients with certificates in ``folder``: an honest round completes; then a coordinator
    that relays its own keys as bob's makes alice abort with PeerKeyRefused before she derives any
    key from them. Returns what happened (JSON-able)."""
    import numpy as np

    from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
    from fedcore.common.stages import Stage
    from fedcore.crypto.recipes import new_keypair
    from fedcore.secagg import auth
    from fedcore.secagg.client import SecAggClient
    from fedcore.secagg.driver import InProcessRound
    from fedcore.secagg.server import SecAggServer
    from fedcore.secagg.state import SecAggStage

    fed, ca = "fed-signed", (folder / "ca.pem").read_bytes()

    def federation(round_: int):
        clients = {c: SecAggClient(ClientIdentity(c, (folder / f"{c}.pem").read_bytes(),
                                                  (folder / f"{c}.key").read_bytes(), ca), fed, {})
                   for c in CLIENTS}
        ctx = AggregationContext(fed, round_, 0, CLIENTS, 3, {}, max_weight=10.0)
        jobs = {c: ClientJob(round_, 0, np.full(3, 0.1 * (i + 1)), 1.0) for i, c in enumerate(CLIENTS)}
        return SecAggServer(fed, {}), clients, ctx, jobs

    out = {"wire_support": auth.WIRE_SUPPORT}
    server, clients, ctx, jobs = federation(1)
    res = InProcessRound(server, clients, ctx, jobs).run().result
    out["honest_sum"] = res.weighted_sum.tolist()

    server, clients, ctx, jobs = federation(2)
    rnd = InProcessRound(server, clients, ctx, jobs)
    rnd.run_stage(Stage.SECAGG_ADVERTISE_KEYS)
    out["signed"] = sorted(server.r.signed)
    server.r.keys["bob"] = (new_keypair()[1], new_keypair()[1])  # the coordinator's own keys, as bob's
    alice = clients["alice"]
    try:
        alice.handle(Stage.SECAGG_SHARE_KEYS, server.task(Stage.SECAGG_SHARE_KEYS, "alice"), jobs["alice"],
                     rnd._no_blob)
        out["refused"] = None
    except auth.PeerKeyRefused as exc:
        out["refused"] = str(exc)
    out["alice_stage"] = str(alice.state.stage)
    out["alice_channel_keys"] = sorted(alice.state.channel_keys)
    out["aborted"] = alice.state.stage == SecAggStage.ABORTED
    return out


def run_patched(tmp: Path, folder: Path) -> dict:
    """:func:`substitution_scenario` in a fresh interpreter whose secagg_pb2 has :data:`PROTO_CHANGE`."""
    protos = tmp / "protos"
    src = (ROOT / "protos" / "fedpsyau" / "v1")
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
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=False,
                          cwd=str(ROOT), env={**_env(), "PYTHONPATH": env_path})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"the patched run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _env() -> dict:
    import os
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
