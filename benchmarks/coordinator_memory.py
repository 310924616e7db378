"""Memory of a coordinator serving 100 clients of a 1e6-parameter model (plain updates).

The coordinator is a real ``fedcore.cli coordinator`` process over mTLS (example workload with a
hidden layer of 47,619 units: 1,000,003 parameters). The clients are lightweight scripted peers
in this process, one mTLS channel and certificate each: they join, report ready for TRAIN without
training, and submit a float64 weighted update of 1e6 values (8 MB) in PLAIN_INPUT, as a real
client would; evaluation reports are small. The coordinator's resident memory is sampled every
50 ms from /proc (VmRSS) and its peak read from VmHWM.

Expected: the plain mode keeps every accepted update until the stage closes, so the peak is
about baseline + clients x 8 MB (+ gRPC buffers of the transfers in flight, at most
``max_concurrent_streams`` x one payload). SecAgg keeps (L + 2) ring values per client, the same
order; CKKS adds each ciphertext into a running sum and keeps only that.

Usage: python benchmarks/coordinator_memory.py [--clients 100] [--params 1000000] [--rounds 2]
Writes benchmarks/results/coordinator_memory.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.provision import provision
from fedcore.transport.channel import open_channel
from fedcore.transport.chunks import send_chunks
from fedcore.transport.tls import TlsMaterial

RESULTS = Path(__file__).resolve().parent / "results"
FED = "fedpsyau"


def _proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append((time.monotonic() - self.t0, _proc_kib(self.pid, "VmRSS") / 1024))
            except (OSError, KeyError):
                return


class Peer:
    """A scripted client: answers each task with a fixed body, never trains."""

    def __init__(self, cid: str, address: str, tls: TlsMaterial, params: int):
        self.cid, self.params = cid, params
        self.stub = pb_grpc.FederationStub(open_channel(address, tls))
        self.update: bytes | None = None

    def hdr(self, task: pb.Task | None = None) -> pb.Header:
        h = pb.Header(federation_id=FED, client_id=self.cid)
        if task is not None:
            h.round, h.stage, h.attempt = task.header.round, task.header.stage, task.header.attempt
        return h

    def body(self, task: pb.Task) -> bytes:
        from google.protobuf import any_pb2

        stage = Stage(task.header.stage)
        if stage == Stage.TRAIN:
            msg = pb.TrainReport(ready=True, metrics={"loss": 1.0})
        elif stage == Stage.STATS:
            msg = pb.StatsReport(ready=True)
        elif stage == Stage.PLAIN_INPUT:
            n = 4 if task.header.round == 0 else self.params
            msg = pb.PlainInput(weighted_update=encode_vector(np.full(n, 1e-3), "float64"), weight=1.0)
        else:
            msg = pb.EvaluateReport(metrics={"loss": 0.5}, num_examples=4, num_classes=4,
                                    confusion=[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
        packed = any_pb2.Any()
        packed.Pack(msg)
        return packed.SerializeToString()

    def step(self) -> str:
        task = self.stub.GetTask(pb.TaskRequest(header=self.hdr()), timeout=60)
        stage = Stage(task.header.stage)
        if stage in (Stage.WAIT, Stage.DONE):
            return stage.name
        self.stub.Submit(send_chunks(self.hdr(task), self.body(task)), timeout=300)
        return stage.name


def run(clients: int, params: int, rounds: int, workers: int) -> dict:
    hidden = max(1, round((params - 4) / 21))     # 16 features, 4 classes: 21 h + 4 parameters
    params = 21 * hidden + 4
    with tempfile.TemporaryDirectory() as tmp:
        ids = [f"c{i:03d}" for i in range(clients)]
        port = _free_port()
        prov = provision(Path(tmp) / "fed", ids, address=f"127.0.0.1:{port}", listen=f"127.0.0.1:{port}",
                         aggregation="plain", rounds=rounds, min_clients=clients, workload_settings={"hidden": hidden},
                         federation={"min_available": clients, "evaluate_every": 0},
                         deadlines={"join": 600.0, "train": 600.0, "stage": 600.0, "evaluate": 600.0,
                                    "heartbeat_interval": 60.0, "heartbeat_timeout": 900.0, "poll_interval": 0.2})
        log = open(Path(tmp) / "coordinator.log", "wb")  # noqa: SIM115 - the child writes to it until the end
        coord = subprocess.Popen([sys.executable, "-m", "fedcore.cli", "coordinator", "--config",
                                  str(prov.coordinator_config)], stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        sampler = Sampler(coord.pid)
        sampler.start()
        try:
            _wait_port(port, coord)
            idle_mib = _proc_kib(coord.pid, "VmRSS") / 1024
            ca = (Path(tmp) / "fed" / "ca.pem").read_bytes()
            peers = []
            for cid in ids:
                folder = prov.client_configs[cid].parent
                tls = TlsMaterial(ca, (folder / "cert.pem").read_bytes(), (folder / "key.pem").read_bytes())
                peers.append(Peer(cid, f"127.0.0.1:{port}", tls, params))
            t0 = time.monotonic()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda p: p.stub.Join(pb.JoinRequest(header=p.hdr()), timeout=60), peers))
                done = set()
                while len(done) < len(peers) and coord.poll() is None:
                    states = list(pool.map(lambda p: p.step(), [p for p in peers if p.cid not in done]))
                    done |= {p.cid for p, s in zip([p for p in peers if p.cid not in done], states) if s == "DONE"}
                    if all(s in ("WAIT", "DONE") for s in states):
                        time.sleep(0.2)
            seconds = time.monotonic() - t0
            peak_mib = _proc_kib(coord.pid, "VmHWM") / 1024
            rc = coord.wait(timeout=120)
        finally:
            sampler.stop.set()
            if coord.poll() is None:
                coord.kill()
            log.close()
        metrics = [json.loads(x) for x in (Path(tmp) / "fed" / "run" / "metrics.jsonl").read_text().splitlines()]
    update_mib = params * 8 / 2**20
    return {"clients": clients, "params": params, "rounds": rounds, "exit_code": rc, "seconds": round(seconds, 2),
            "idle_rss_mib": round(idle_mib, 1), "peak_rss_mib": round(peak_mib, 1),
            "update_mib_per_client": round(update_mib, 2),
            "held_updates_mib": round(clients * update_mib, 1),
            "peak_over_idle_per_client_mib": round((peak_mib - idle_mib) / clients, 2),
            "rounds_completed": [m["round"] for m in metrics], "contributors": [m["contributors"] for m in metrics],
            "bytes_up_per_round": [m["bytes_up"] for m in metrics], "samples": sampler.samples}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.5)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the coordinator did not bind")


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, rss = zip(*result["samples"]) if result["samples"] else ((), ())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t, rss, lw=1.2, label="coordinator RSS")
    ax.axhline(result["idle_rss_mib"], ls=":", c="grey", label=f"idle {result['idle_rss_mib']:.0f} MiB")
    ax.axhline(result["idle_rss_mib"] + result["held_updates_mib"], ls="--", c="tab:red",
               label=f"idle + {result['clients']} x {result['update_mib_per_client']:.1f} MiB updates")
    ax.set_xlabel("seconds since the coordinator started")
    ax.set_ylabel("MiB")
    ax.set_title(f"coordinator, {result['clients']} clients, {result['params']:.0e} parameters (plain); "
                 f"peak {result['peak_rss_mib']:.0f} MiB", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8, help="threads driving the scripted clients")
    args = ap.parse_args(argv)
    result = run(args.clients, args.params, args.rounds, args.workers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(result, RESULTS / "coordinator_memory.png")
    samples = result.pop("samples")
    result["samples_every_s"] = 0.05
    result["rss_mib_series"] = [round(r, 1) for _, r in samples[:: max(1, len(samples) // 400)]]
    (RESULTS / "coordinator_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mib_series"}, indent=2))
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
