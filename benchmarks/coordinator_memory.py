"""Memory of a coordinator serving 10 to 100 clients of a 1e6-parameter model, in every mode.

The coordinator is a real ``fedcore.cli coordinator`` process over mTLS. Its workload is
:mod:`fedcore.examples.updates` (a flat 1e6-value model, numpy only), so the figure is the
coordinator's own memory; ``--workload example`` uses the torch MLP (a hidden layer of 47,619
units: 1,000,003 parameters) whose import alone costs ~180 MiB of any process. The clients are lightweight peers in this
process, one mTLS channel and certificate each, that run the real client side of the mode
(:class:`~fedcore.plain.PlainClient`, :class:`~fedcore.secagg.client.SecAggClient`,
:class:`~fedcore.he.client.CkksClient`, with their certificates: signed SecAgg keys, the CKKS key
exchange) on a fixed update of 1e6 values, but never train: they report ready for TRAIN at once,
and evaluation reports are small. ``--workers`` threads drive them, so that many uploads are in
flight at once. The coordinator's resident memory is sampled every 50 ms from /proc (VmRSS) and
its peak read from VmHWM; the load average at start is recorded.

Expected since the modes stream (each accepted update folded into a running sum, then dropped):
peak = idle + the running sum (plain float64 8 MB, secagg (L + 2) ring values 8 MB, ckks the
ciphertext sum ~32 MB plus the served sum ~16 MB) + the copies of the uploads in flight (the
servicer's chunk assembly, the parsed Any and body, the decoded vector: a few x 8 MB per upload,
``--workers`` uploads at once), flat in the number of clients.

Usage: python benchmarks/coordinator_memory.py [--modes plain secagg ckks] [--clients 10 50 100]
       [--params 1000000] [--rounds 2] [--workers 8] [--coordinator-env KEY=VALUE ...] [--stem NAME]
Writes benchmarks/results/<stem>.{json,png} (default coordinator_memory).
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

import grpc
import numpy as np

from fedcore.common.aggregation import ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.provision import provision
from fedcore.transport.channel import open_channel
from fedcore.transport.chunks import receive_chunks, send_chunks
from fedcore.transport.status import retry_hint
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
        self.hwm_mib = 0.0  # the kernel's peak (VmHWM) at the last sample: kept if the process exits first

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append((time.monotonic() - self.t0, _proc_kib(self.pid, "VmRSS") / 1024))
                self.hwm_mib = max(self.hwm_mib, _proc_kib(self.pid, "VmHWM") / 1024)
            except (OSError, KeyError):
                return


class Peer:
    """A client that never trains: ready at TRAIN/STATS, then the real mode client on a fixed update."""

    def __init__(self, cid: str, address: str, tls: TlsMaterial, mode, vector: np.ndarray):
        self.cid, self.mode, self.vector = cid, mode, vector
        self.stub = pb_grpc.FederationStub(open_channel(address, tls))
        self.jobs: dict[tuple[int, int], ClientJob] = {}
        self.retries = 0  # Submit streams the coordinator's upload budget told to retry

    def hdr(self, task: pb.Task | None = None) -> pb.Header:
        h = pb.Header(federation_id=FED, client_id=self.cid)
        if task is not None:
            h.round, h.stage, h.attempt = task.header.round, task.header.stage, task.header.attempt
        return h

    def fetch(self, task: pb.Task, name: str) -> bytes:
        req = pb.DownloadRequest(header=task.header, blob=name)
        return receive_chunks(self.stub.Download(req, timeout=600), 2**31).payload

    def body(self, task: pb.Task) -> bytes:
        from google.protobuf import any_pb2

        h = task.header
        stage = Stage(h.stage)
        if stage == Stage.TRAIN:
            self.jobs[(h.round, h.attempt)] = ClientJob(h.round, h.attempt, self.vector, 1.0)
            msg = pb.TrainReport(ready=True, metrics={"loss": 1.0})
        elif stage == Stage.STATS:
            self.jobs[(h.round, h.attempt)] = ClientJob(h.round, h.attempt, np.ones(4), 1.0)
            msg = pb.StatsReport(ready=True)
        elif stage == Stage.EVALUATE:
            msg = pb.EvaluateReport(
                metrics={"loss": 0.5},
                num_examples=4,
                num_classes=4,
                confusion=[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            )
        else:  # a stage of the aggregation mode: what the client daemon does
            from fedcore.client.handlers import unpack_any

            msg = self.mode.handle(
                stage, unpack_any(task.body), self.jobs.get((h.round, h.attempt)), lambda name: self.fetch(task, name)
            )
        packed = any_pb2.Any()
        packed.Pack(msg)
        return packed.SerializeToString()

    def step(self) -> str:
        task = self.stub.GetTask(pb.TaskRequest(header=self.hdr()), timeout=60)
        stage = Stage(task.header.stage)
        if stage in (Stage.WAIT, Stage.DONE):
            return stage.name
        body = self.body(task)
        while True:  # as the client daemon does: a refusal by the upload budget is retried after its hint
            try:
                self.stub.Submit(send_chunks(self.hdr(task), body), timeout=600)
                return stage.name
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self.retries += 1
                time.sleep(retry_hint(exc) or 0.2)


def _mode_client(mode: str, cid: str, folder: Path, ca: bytes):
    identity = ClientIdentity(cid, (folder / "cert.pem").read_bytes(), (folder / "key.pem").read_bytes(), ca)
    if mode == "plain":
        from fedcore.plain import PlainClient

        return PlainClient(identity, FED, {})
    if mode == "secagg":
        from fedcore.secagg.client import SecAggClient

        return SecAggClient(identity, FED, {})
    from fedcore.he.client import CkksClient

    return CkksClient(identity, FED, {})


#: the coordinator's workload: ``updates`` (numpy only: the coordinator's own memory) or ``example``
#: (the torch MLP: adds the ~180 MiB a training framework costs any process that imports it)
WORKLOADS = ("updates", "example")


def run(
    mode: str,
    clients: int,
    params: int,
    rounds: int,
    workers: int,
    env: dict[str, str] | None = None,
    workload: str = "updates",
) -> dict:
    if workload == "example":
        hidden = max(1, round((params - 4) / 21))  # 16 features, 4 classes: 21 h + 4 parameters
        params = 21 * hidden + 4
        path, settings = "fedcore.examples.softmax:workload", {"hidden": hidden}
    else:
        path, settings = "fedcore.examples.updates:workload", {"size": params}
    vector = np.full(params, 1e-3)  # one update shared by every peer (read only)
    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        ids = [f"c{i:03d}" for i in range(clients)]
        port = _free_port()
        prov = provision(
            Path(tmp) / "fed",
            ids,
            address=f"127.0.0.1:{port}",
            listen=f"127.0.0.1:{port}",
            aggregation=mode,
            rounds=rounds,
            min_clients=clients,
            workload=path,
            workload_settings=settings,
            federation={"min_available": clients, "evaluate_every": 0},
            deadlines={
                "join": 600.0,
                "train": 600.0,
                "stage": 900.0,
                "evaluate": 600.0,
                "heartbeat_interval": 60.0,
                "heartbeat_timeout": 1800.0,
                "poll_interval": 0.2,
            },
        )
        log = open(Path(tmp) / "coordinator.log", "wb")  # noqa: SIM115 - the child writes to it until the end
        coord = subprocess.Popen(
            [sys.executable, "-m", "fedcore.cli", "coordinator", "--config", str(prov.coordinator_config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )
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
                peers.append(Peer(cid, f"127.0.0.1:{port}", tls, _mode_client(mode, cid, folder, ca), vector))
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
            try:
                peak_mib = _proc_kib(coord.pid, "VmHWM") / 1024
            except (OSError, KeyError):  # it has exited already: the last peak the sampler read
                peak_mib = sampler.hwm_mib
            rc = coord.wait(timeout=120)
        finally:
            sampler.stop.set()
            if coord.poll() is None:
                coord.kill()
            log.close()
        mpath = Path(tmp) / "fed" / "run" / "metrics.jsonl"
        metrics = [json.loads(x) for x in mpath.read_text().splitlines()] if mpath.exists() else []
        tail = (Path(tmp) / "coordinator.log").read_text(errors="replace").splitlines()[-5:]
    update_mib = params * 8 / 2**20
    return {
        "mode": mode,
        "clients": clients,
        "params": params,
        "rounds": rounds,
        "workers": workers,
        "workload": path,
        "coordinator_env": dict(env or {}),
        "loadavg_at_start": load,
        "exit_code": rc,
        "seconds": round(seconds, 2),
        "idle_rss_mib": round(idle_mib, 1),
        "peak_rss_mib": round(peak_mib, 1),
        "peak_over_idle_mib": round(peak_mib - idle_mib, 1),
        "update_mib_per_client": round(update_mib, 2),
        "all_updates_mib": round(clients * update_mib, 1),
        "rounds_completed": [m["round"] for m in metrics],
        "contributors": [m.get("contributors") for m in metrics],
        "bytes_up_per_round": [m.get("bytes_up") for m in metrics],
        "submit_retries": sum(p.retries for p in peers),
        "coordinator_log_tail": tail if rc != 0 else [],
        "samples": sampler.samples,
    }


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


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in runs))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    for mode in modes:
        rs = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["clients"])
        a.plot([r["clients"] for r in rs], [r["peak_rss_mib"] for r in rs], "o-", label=f"{mode}: peak")
        a.plot([r["clients"] for r in rs], [r["idle_rss_mib"] for r in rs], ":", c=a.lines[-1].get_color(), lw=1)
        big = rs[-1]
        if big["samples"]:
            t, rss = zip(*big["samples"])
            b.plot(t, rss, lw=1, label=f"{mode}, {big['clients']} clients (peak {big['peak_rss_mib']:.0f} MiB)")
    a.axhline(300, color="k", ls="--", lw=1, label="target 300 MiB")
    a.set_xlabel("clients")
    a.set_ylabel("coordinator RSS, MiB (dotted: idle)")
    a.set_title(f"peak RSS, {runs[0]['params']:.0e} parameters, {runs[0]['rounds']} rounds", fontsize=9)
    a.legend(fontsize=8)
    b.axhline(300, color="k", ls="--", lw=1)
    b.set_xlabel("seconds since the coordinator started")
    b.set_ylabel("MiB")
    b.set_title("coordinator RSS over the run (largest federation per mode)", fontsize=9)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["plain", "secagg", "ckks"], choices=["plain", "secagg", "ckks"])
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8, help="threads driving the peers (uploads in flight)")
    ap.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="updates",
        help="the coordinator's workload: updates (numpy only, default: the coordinator's own memory) or "
        "example (a torch MLP: its import adds ~180 MiB to any process)",
    )
    ap.add_argument(
        "--coordinator-env",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the coordinator process (e.g. MALLOC_ARENA_MAX=2)",
    )
    ap.add_argument("--stem", default="coordinator_memory", help="name of the JSON and PNG written")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.coordinator_env)
    started = list(os.getloadavg())
    runs = []
    for mode in args.modes:
        for n in args.clients:
            r = run(mode, n, args.params, args.rounds, args.workers, env, args.workload)
            runs.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "samples"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / f"{args.stem}.png")
    for r in runs:
        samples = r.pop("samples")
        r["rss_mib_series"] = [round(x, 1) for _, x in samples[:: max(1, len(samples) // 200)]]
    result = {
        "loadavg_at_start": started,
        "cpus": os.cpu_count(),
        "samples_every_s": 0.05,
        "target_peak_mib": 300,
        "runs": runs,
    }
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
