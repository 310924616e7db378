"""Model pull and update submit throughput over loopback mTLS, against an in-memory copy.

For each size (1e5, 1e6, 1e7 float32 parameters) the script serves the payload through fedcore's
own transport -- :func:`fedcore.transport.server.serve` with TLS and required client
certificates, the chunked :func:`send_chunks` / :func:`receive_chunks` (4 MiB chunks, SHA-256
verified on receipt), the production channel options -- and times

- *pull*: a Download stream, verified by the client (what a client does for the global model);
- *submit*: a Submit stream, verified by the server (what the coordinator does for an update);
- *copy*: ``bytearray(payload)``, a raw in-memory copy of the same bytes (the baseline).

Each measurement: one warm-up, then the median of ``--repeats`` runs. Writes
``benchmarks/results/transfer.json`` and ``transfer.png``.

    python benchmarks/transfer.py [--sizes 1e5 1e6 1e7] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.certs import create_ca, issue_client, issue_server
from fedcore.transport.channel import open_channel
from fedcore.transport.chunks import receive_chunks, send_chunks, sha256
from fedcore.transport.server import serve
from fedcore.transport.tls import TlsMaterial

RESULTS = Path(__file__).resolve().parent / "results"
HDR = pb.Header(federation_id="bench", round=1, stage=10, client_id="bench-client")


class BenchServicer(pb_grpc.FederationServicer):
    """Download serves the current payload; Submit receives and verifies one."""

    def __init__(self, limit: int):
        self.payload = b""
        self.digest = sha256(b"")
        self.limit = limit

    def Download(self, request, context):
        yield from send_chunks(HDR, self.payload, blob=request.blob, digest=self.digest)

    def Submit(self, request_iterator, context):
        got = receive_chunks(request_iterator, self.limit)
        return pb.SubmitReply(message=f"{len(got.payload)}")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    ca = create_ca("bench CA")
    server_creds, client_creds = issue_server(ca, ["localhost", "127.0.0.1"]), issue_client(ca, "bench-client")
    servicer = BenchServicer(limit=1 << 31)
    bound = serve(servicer, "127.0.0.1:0", TlsMaterial(ca.cert_pem, server_creds.cert_pem, server_creds.key_pem))
    channel = open_channel(
        f"127.0.0.1:{bound.port}", TlsMaterial(ca.cert_pem, client_creds.cert_pem, client_creds.key_pem)
    )
    stub = pb_grpc.FederationStub(channel)
    rows = []
    try:
        for size in args.sizes:
            n = int(size)
            payload = np.random.default_rng(0).standard_normal(n).astype("<f4").tobytes()
            servicer.payload, servicer.digest = payload, sha256(payload)

            def pull(payload=payload):
                got = receive_chunks(
                    stub.Download(pb.DownloadRequest(header=HDR, blob="model/1"), timeout=600), 1 << 31
                )
                assert got.payload == payload

            def submit(payload=payload):
                reply = stub.Submit(send_chunks(HDR, payload), timeout=600)
                assert reply.message == str(len(payload))

            copy = _median_time(lambda payload=payload: bytearray(payload), max(args.repeats, 20))
            t_pull = _median_time(pull, args.repeats)
            t_submit = _median_time(submit, args.repeats)
            mb = len(payload) / 1e6
            row = {
                "params": n,
                "bytes": len(payload),
                "copy_s": copy,
                "pull_s": t_pull,
                "submit_s": t_submit,
                "pull_MBps": mb / t_pull,
                "submit_MBps": mb / t_submit,
                "copy_MBps": mb / copy,
                "pull_vs_copy": t_pull / copy,
                "submit_vs_copy": t_submit / copy,
            }
            rows.append(row)
            print(
                f"{n:>10} params {mb:8.1f} MB  pull {row['pull_MBps']:7.1f} MB/s ({row['pull_vs_copy']:6.0f}x copy)  "
                f"submit {row['submit_MBps']:7.1f} MB/s ({row['submit_vs_copy']:6.0f}x copy)  "
                f"copy {row['copy_MBps']:8.0f} MB/s",
                flush=True,
            )
    finally:
        channel.close()
        bound.stop(None)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "tls": "mTLS (ECDSA P-256)",
        "chunk_bytes": 4 * 1024 * 1024,
        "baseline": "bytearray(payload): an in-memory copy of the same bytes",
    }
    (args.out / "transfer.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    _plot(rows, args.out / "transfer.png")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    params = [r["params"] for r in rows]
    for key, label in (
        ("pull_MBps", "model pull (Download)"),
        ("submit_MBps", "update submit (Submit)"),
        ("copy_MBps", "in-memory copy"),
    ):
        ax1.plot(params, [r[key] for r in rows], marker="o", label=label)
    ax1.set(
        xscale="log", yscale="log", xlabel="float32 parameters", ylabel="MB/s", title="Throughput over loopback mTLS"
    )
    ax1.legend()
    for key, label in (("pull_vs_copy", "pull / copy"), ("submit_vs_copy", "submit / copy")):
        ax2.plot(params, [r[key] for r in rows], marker="o", label=label)
    ax2.set(xscale="log", xlabel="float32 parameters", ylabel="time ratio", title="Slowdown against a raw copy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
