"""CKKS aggregation cost: time per step and bytes per parameter, against the plain round.

For L in {1e5, 1e6} parameters and n in {3, 10, 50} clients (``--quick``: 1e5 with 3 and 10):

- per-client steps, median of ``--repeats`` after a warm-up: encrypt (encode + seeded symmetric
  encryption), serialise, coordinator deserialise + check + add (one client's input), serialise
  the sum, decrypt (deserialise the sum, decrypt, decode, round);
- one whole round through the daemons' code: the coordinator's ``RoundEngine`` and one
  ``ClientDaemon`` per client over the in-memory transport
  (:func:`fedcore.simulation_memory.memory_federation`, every message through bytes), each client
  contributing the known update of :mod:`fedcore.examples.updates`; and the ``plain`` round of the
  same engine on the same updates: the time and byte ratios. The round's time is the wall time of
  its aggregation stages (all parties in one process, one after another), its per-stage server
  and client seconds and bytes come from the federation's timings (``fed.timings``);
- bytes per parameter of each encoding option (TenSEAL's ``CKKSVector`` as the naive baseline);
- upload and download bytes per parameter before and after the served sum was switched down to
  one prime, in the same run on the same updates (:func:`transfer`): "before" is the sum at the
  upload level under the previous default moduli [60, 40, 60] (what the coordinator served until
  then, byte for byte, measured when the decrypt stage opens), "after" the default; also the
  upload-level fallback (weights of 20000, so the clients' bound slot really sends every client
  to the upload-level sum) and the one-prime upload (``max_abs <= 2^14``), at 1e5, the DPK-GAT
  size (126,003) and 1e6 parameters. Download bytes are the decrypt task plus the blobs each
  client fetched.

Writes benchmarks/results/ckks.json and ckks.png. Run: ``python benchmarks/ckks.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import matplotlib
import numpy as np
import tenseal as ts

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedcore.common.stages import Stage
from fedcore.coordinator.state import Phase
from fedcore.examples import updates
from fedcore.he import pack
from fedcore.he.context import PublicContext, SecretContext
from fedcore.he.params import CkksParams
from fedcore.simulation_memory import memory_federation

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOAD = "fedcore.examples.updates:workload"
ENGINE = (
    "fedcore.coordinator.engine.RoundEngine (fedcore.coordinator.daemon.build_engine) and one "
    "fedcore.client.daemon.ClientDaemon per client over fedcore.transport.memory.MemoryConnection "
    "(fedcore.simulation_memory.memory_federation, simulated clock), workload fedcore.examples.updates"
)
#: engine stages that are not the aggregation (the same in every mode)
NOT_AGGREGATION = {"TRAIN", "EVALUATE", "STATS"}


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def steps(L: int, repeats: int) -> dict:
    """Per-client step timings and sizes for one vector length."""
    secret = SecretContext(CkksParams())
    public = PublicContext(secret.params)
    p = secret.params
    frame = pack.frame(np.random.default_rng(0).normal(scale=0.01, size=L), 100.0, p.bound_shift_bits)
    count = p.ciphertexts_for(L)
    objs = secret.encrypt_objects(frame)
    blobs = secret.dump_ciphertexts(objs)
    total = public.add_into(
        None, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b")
    )
    sum_blobs = public.dump_ciphertexts(total)
    low_blobs = public.dump_ciphertexts(public.switch_down(total, p.download_level))

    acc = public.load_ciphertexts(sum_blobs, count=count, max_bytes=public.max_sum_bytes, what="s")

    def deser_add():  # one client's input into a running sum (which grows a little each call)
        public.add_into(acc, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b"))

    def decrypt(blobs_, primes):
        cts = secret.load_ciphertexts(
            blobs_, count=count, max_bytes=secret.sum_bytes_limit(primes), what="s", primes=primes
        )
        pack.to_grid(secret.decrypt(cts, p.frame_length(L))[:-1], p.round_bits)

    return {
        "encrypt_s": median_time(lambda: secret.encrypt_objects(frame), repeats),
        "serialise_s": median_time(lambda: secret.dump_ciphertexts(objs), repeats),
        "server_deserialise_add_s": median_time(deser_add, repeats),
        "server_switch_down_serialise_sum_s": median_time(
            lambda: public.dump_ciphertexts(public.switch_down(total, p.download_level)), repeats
        ),
        "server_serialise_sum_upload_level_s": median_time(lambda: public.dump_ciphertexts(total), repeats),
        "decrypt_s": median_time(lambda: decrypt(low_blobs, p.download_level), repeats),
        "decrypt_upload_level_s": median_time(lambda: decrypt(sum_blobs, p.level_primes), repeats),
        "ciphertexts": count,
        "upload_bytes_per_param": sum(map(len, blobs)) / L,
        "sum_bytes_per_param": sum(map(len, low_blobs)) / L,
        "sum_bytes_per_param_upload_level": sum(map(len, sum_blobs)) / L,
    }


class Federation:
    """One federation of ``n`` clients over the in-memory transport, driven phase by phase, with
    the decrypt tasks' sizes and (``watch_sum``) the upload-level sum's size when the decrypt stage
    opens recorded on the way (a tamper hook that changes nothing)."""

    def __init__(
        self,
        out: Path,
        n: int,
        L: int,
        *,
        aggregation: str = "ckks",
        ckks: dict | None = None,
        seed: int | None = None,
        weight: int | None = None,
        watch_sum: bool = False,
    ):
        seed = n if seed is None else seed
        self.settings = {"size": L, "scale": 0.01, "seed": seed}
        # client weights (num_examples) 20..300, as this benchmark always drew them, or all ``weight``
        weights = np.random.default_rng(seed).integers(20, 300, size=n) if weight is None else [weight] * n
        self.clients = [{"num_examples": int(w)} for w in weights]
        self.n, self.L = n, L
        self.task_bytes: dict[tuple[str, str], int] = {}  # (stage, client) -> task body bytes
        self.upload_level_sum = 0
        self.watch_sum = watch_sum
        self.fed = memory_federation(
            n,
            1,
            out,
            aggregation=aggregation,
            workload=WORKLOAD,
            workload_settings=self.settings,
            client_settings=self.clients,
            ckks=ckks or None,
            tamper=self._watch,
            federation={"min_available": n, "min_clients": min(3, n)},
        )

    def _watch(self, stage, cid, direction, data):
        if direction == "down":
            self.task_bytes.setdefault((stage.name, cid), len(data))
            if self.watch_sum and stage == Stage.CKKS_DECRYPT and not self.upload_level_sum:
                r = self.fed.engine.mode._round
                self.upload_level_sum = (
                    len(self.fed.engine.mode._sum_message(r, r.total)) if r.total is not None else len(r.blob)
                )
        return data

    def wall_until(self, cond) -> float:
        t0 = time.perf_counter()
        if not self.fed.run_until(cond):
            raise RuntimeError(f"the federation stalled ({self.fed.engine.state.phase})")
        return time.perf_counter() - t0

    def play(self) -> tuple[float, float]:
        """(set-up wall seconds, the round's aggregation wall seconds); the run then ends."""
        setup_s = self.wall_until(lambda e: e.state.setup_done or e.state.phase == Phase.TRAIN)
        self.wall_until(lambda e: e.state.phase == Phase.AGGREGATE)
        round_s = self.wall_until(lambda e: e.state.phase != Phase.AGGREGATE)
        rc = self.fed.run()
        if rc != 0 or self.fed.engine.state.phase != Phase.DONE:
            raise RuntimeError(f"the federation ended with exit code {rc}: {self.fed.engine.state.outcome}")
        return setup_s, round_s

    def stages(self) -> dict[str, dict]:
        """Round 1's aggregation stages: seconds (server, clients) and bytes, from ``fed.timings``."""
        out = {}
        for (round_, _attempt, name), t in sorted(self.fed.timings.items()):
            if round_ != 1 or name in NOT_AGGREGATION:
                continue
            clients = list(t.client_s.values())
            tasks = sum(v for (s, _), v in self.task_bytes.items() if s == name)
            out[name] = {
                "server_s": t.server_s,
                "client_s_sum": sum(clients),
                "client_s_median": statistics.median(clients) if clients else 0.0,
                "bytes_up": t.bytes_up,
                "blob_bytes_down": t.bytes_down,
                "task_bytes_down": tasks,
            }
        return out

    def expected(self) -> np.ndarray:
        """The float64 weighted sum of the clients' updates (what the round should produce)."""
        mine = [{**self.settings, **c} for c in self.clients]
        return sum(updates.weight(mine[i], i) * updates.update(mine[i], i, 1) for i in range(self.n))

    def result(self):
        return self.fed.engine.mode.result()


def warm_up() -> None:
    """A small ckks round through the whole path (imports, SEAL contexts, the engine)."""
    with tempfile.TemporaryDirectory() as tmp:
        Federation(Path(tmp) / "warm", 3, 1000).play()


def rounds(L: int, n: int) -> dict:
    """One ckks round and one plain round through the engine, on the same known updates."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Federation(Path(tmp) / "plain", n, L, aggregation="plain")
        _, plain_s = plain.play()
        plain_res, plain_st = plain.result(), plain.stages()
        ckks = Federation(Path(tmp) / "ckks", n, L)
        setup_s, ckks_s = ckks.play()
        res, st = ckks.result(), ckks.stages()
    enc, dec = st["CKKS_ENCRYPTED_INPUT"], st["CKKS_DECRYPT"]
    up = enc["bytes_up"] / (n * L)
    plain_up = sum(s["bytes_up"] for s in plain_st.values()) / (n * L)
    err = np.linalg.norm(res.weighted_sum - plain_res.weighted_sum) / np.linalg.norm(plain_res.weighted_sum)
    return {
        "L": L,
        "clients": n,
        "setup_s": setup_s,
        "ckks_round_s": ckks_s,
        "plain_round_s": plain_s,
        "time_ratio": ckks_s / plain_s,
        "client_encrypt_stage_s_median": enc["client_s_median"],
        "client_decrypt_stage_s_median": dec["client_s_median"],
        "server_s": sum(s["server_s"] for s in st.values()),
        "ckks_round_stage_sum_s": sum(s["server_s"] + s["client_s_sum"] for s in st.values()),
        "plain_round_stage_sum_s": sum(s["server_s"] + s["client_s_sum"] for s in plain_st.values()),
        "upload_bytes_per_param": up,
        "plain_upload_bytes_per_param": plain_up,
        "bytes_ratio": up / plain_up,
        "download_bytes_per_param_per_client": (dec["blob_bytes_down"] + dec["task_bytes_down"]) / (n * L),
        "relative_error_vs_plain": float(err),
        "stages": st,
        "plain_stages": plain_st,
    }


#: (name, ckks settings, every client's weight (None: 20..300), what a client downloads: "primary"
#: the served sum it fetched, "before" the sum at the upload level only (the coordinator's behaviour
#: until then), "fallback" what it fetched when its bound slot sent it to the upload-level sum too)
TRANSFER_CONFIGS = (
    (
        "before: [60,40,60], sum served at the upload level (previous default)",
        {"coeff_mod_bit_sizes": [60, 40, 60]},
        None,
        "before",
    ),
    ("[60,40,60], sum switched to its 60-bit prime", {"coeff_mod_bit_sizes": [60, 40, 60]}, None, "primary"),
    ("after: default [57,40,60], sum switched to its 57-bit prime", {}, None, "primary"),
    ("default, fallback: peaks add up beyond 2^14, the upload-level sum fetched too", {}, 20000, "fallback"),
    ("default with max_abs <= 2^14: one-prime upload and sum", {"max_abs": 2.0**14}, None, "primary"),
)


def transfer(L: int, n: int = 3) -> list[dict]:
    """Bytes up and down per client and parameter for each of :data:`TRANSFER_CONFIGS`, one
    round each through the engine on the same updates (the upload-level sum is measured as it
    stands when the decrypt stage opens: what the coordinator used to serve)."""
    out = []
    for name, settings, weight, which in TRANSFER_CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            f = Federation(Path(tmp) / "fed", n, L, ckks=settings, seed=7, weight=weight, watch_sum=True)
            f.play()
            res, st, server = f.result(), f.stages(), f.fed.engine.mode
            dec = st["CKKS_DECRYPT"]
            task_bytes = dec["task_bytes_down"] / n  # the decrypt task itself
            served = f.upload_level_sum if which == "before" else dec["blob_bytes_down"] / n
            fetched_full = res.notes["full_sum_fetches"]
            if (which == "fallback") != (fetched_full == sorted(f.fed.daemons)):
                raise RuntimeError(
                    f"{name}: expected {'every' if which == 'fallback' else 'no'} client to fetch "
                    f"the upload-level sum (got {fetched_full})"
                )
            want = f.expected()
            out.append(
                {
                    "config": name,
                    "L": L,
                    "clients": n,
                    "upload_bytes_per_param": st["CKKS_ENCRYPTED_INPUT"]["bytes_up"] / (n * L),
                    "download_bytes_per_param": (served + task_bytes) / L,
                    "sum_blob_bytes_per_param": served / L,
                    "upload_primes": server.params.level_primes,
                    "download_primes": server.params.download_level
                    if which == "primary"
                    else server.params.level_primes,
                    "weighted_sum_checked": which != "before",
                    "relative_error_vs_float64": float(np.linalg.norm(res.weighted_sum - want) / np.linalg.norm(want)),
                }
            )
        print(
            f"  L={L}: up {out[-1]['upload_bytes_per_param']:6.2f}  down {out[-1]['download_bytes_per_param']:6.2f}"
            f"  {name}",
            flush=True,
        )
    return out


def size_options(L: int) -> list[dict]:
    """Bytes per parameter (and the max error of one encrypt/decrypt) of each way to encrypt."""
    x = np.random.default_rng(1).normal(size=L)
    out = []

    def tenseal(name, chain, enc_type, chunked):
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=chain, encryption_type=enc_type)
        ctx.global_scale = 2.0**40
        t0 = time.perf_counter()
        if chunked:
            vecs = [ts.ckks_vector(ctx, x[i : i + 4096].tolist()) for i in range(0, L, 4096)]
        else:
            vecs = [ts.ckks_vector(ctx, x.tolist())]
        blobs = [v.serialize() for v in vecs]
        dt = time.perf_counter() - t0
        got = np.concatenate([np.array(v.decrypt()) for v in vecs])
        out.append(
            {
                "option": name,
                "bytes_per_param": sum(map(len, blobs)) / L,
                "encrypt_serialise_s": dt,
                "max_abs_error": float(np.abs(got - x).max()),
            }
        )

    tenseal("TenSEAL CKKSVector, public key, [60,40,60] (naive)", [60, 40, 60], ts.ENCRYPTION_TYPE.ASYMMETRIC, False)
    tenseal(
        "TenSEAL CKKSVector chunked (4096 slots each), public key", [60, 40, 60], ts.ENCRYPTION_TYPE.ASYMMETRIC, True
    )
    tenseal(
        "TenSEAL CKKSVector, ENCRYPTION_TYPE.SYMMETRIC (not seeded)", [60, 40, 60], ts.ENCRYPTION_TYPE.SYMMETRIC, False
    )
    tenseal("TenSEAL CKKSVector, [60,40]: one 60-bit data prime", [60, 40], ts.ENCRYPTION_TYPE.SYMMETRIC, False)
    for name, params in (
        ("fedcore: seeded symmetric + complex packing, top level (default)", CkksParams()),
        ("fedcore: same at one 57-bit prime (max_abs <= 2^14)", CkksParams(max_abs=2.0**14)),
    ):
        secret = SecretContext(params)
        t0 = time.perf_counter()
        blobs = secret.encrypt(x)
        dt = time.perf_counter() - t0
        cts = secret.load_ciphertexts(blobs, count=len(blobs), max_bytes=secret.max_input_bytes, what="x")
        got = secret.decrypt(cts, L)
        out.append(
            {
                "option": name,
                "bytes_per_param": sum(map(len, blobs)) / L,
                "encrypt_serialise_s": dt,
                "max_abs_error": float(np.abs(got - x).max()),
            }
        )
        full = secret.dump_ciphertexts(cts)
        out.append(
            {
                "option": name.replace("fedcore: ", "fedcore, unseeded (a sum at this level): "),
                "bytes_per_param": sum(map(len, full)) / L,
                "encrypt_serialise_s": None,
                "max_abs_error": None,
            }
        )
        if params.level_primes > params.download_level:
            low = secret.dump_ciphertexts(secret.switch_down(cts, params.download_level))
            out.append(
                {
                    "option": "fedcore, the served sum: switched down to the 57-bit prime (default)",
                    "bytes_per_param": sum(map(len, low)) / L,
                    "encrypt_serialise_s": None,
                    "max_abs_error": None,
                }
            )
    out.append({"option": "plain float64", "bytes_per_param": 8.0, "encrypt_serialise_s": None, "max_abs_error": 0.0})
    return out


def plot(result: dict, path: Path) -> None:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(19, 5.5), gridspec_kw={"width_ratios": [1.1, 1, 1]})
    ts_ = result["transfer"]
    configs = list(dict.fromkeys(t["config"] for t in ts_))
    Ls = sorted({t["L"] for t in ts_})
    width = 0.8 / max(len(configs), 1)
    for i, name in enumerate(configs):
        ys = [next(t["download_bytes_per_param"] for t in ts_ if t["config"] == name and t["L"] == L) for L in Ls]
        bars = c.bar(
            np.arange(len(Ls)) + (i - len(configs) / 2 + 0.5) * width, ys, width, label=textwrap.fill(name, 48)
        )
        c.bar_label(bars, fmt="%.1f", fontsize=6)
    c.axhline(16, color="k", ls="--", lw=1, label="target 16 B/param")
    c.set_xticks(range(len(Ls)), [f"L={L:,}" for L in Ls], fontsize=8)
    c.set_ylabel("download bytes per parameter and client")
    c.set_title("Served sum before / after switching to one prime")
    c.legend(fontsize=6, loc="upper left")
    rs = result["rounds"]
    if not rs:
        a.set_visible(False)
    labels = [f"L={r['L']:.0e}\nn={r['clients']}".replace("e+0", "e") for r in rs]
    pos = np.arange(len(rs))
    a.bar(pos - 0.2, [r["ckks_round_s"] for r in rs], 0.4, label="ckks round")
    a.bar(pos + 0.2, [r["plain_round_s"] for r in rs], 0.4, label="plain round")
    for p, r in zip(pos, rs):
        a.text(p, r["ckks_round_s"], f"x{r['time_ratio']:.0f}", ha="center", va="bottom", fontsize=8)
    a.set_yscale("log")
    a.set_xticks(pos, labels, fontsize=8)
    a.set_ylabel("aggregation seconds of a round (one process, all parties)")
    a.set_title("Round aggregation time: engine + client daemons, in memory")
    a.legend()
    opts = result["size_options"]
    colours = [
        "tab:gray"
        if o["option"].startswith("TenSEAL")
        else "tab:olive"
        if o["option"].startswith("plain")
        else "tab:purple"
        for o in opts
    ]
    b.barh(range(len(opts)), [o["bytes_per_param"] for o in opts], color=colours)
    b.set_yticks(range(len(opts)), [textwrap.fill(o["option"], 34) for o in opts], fontsize=7)
    for i, o in enumerate(opts):
        b.text(o["bytes_per_param"] + 0.5, i, f"{o['bytes_per_param']:.1f}", va="center", fontsize=7)
    b.axvline(16, color="k", ls="--", lw=1, label="target 16 B/param (download)")
    b.invert_yaxis()
    b.set_xlabel("bytes per parameter on the wire")
    b.set_title(f"Encoding options (L={result['size_L']})")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _commit() -> str:
    """HEAD, with "+dirty" when fedcore/ or this script differ from it."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--", "../fedcore", Path(__file__).name) else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e5 parameters with 3 and 10 clients only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--transfer-only", action="store_true", help="only the bytes before/after (no timings)")
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    counts = [3, 10] if args.quick else [3, 10, 50]
    logging.getLogger("fedcore").setLevel(logging.ERROR)  # one "DP is off" warning per client and round
    d = CkksParams()
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "tenseal": ts.__version__,
        "loadavg_at_start": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "nice": os.nice(0),
        "commit": _commit(),
        "engine": ENGINE,
        "rounds_measured_as": "wall seconds of round 1's aggregation stages (the AGGREGATE phase), every "
        "party in this one process; per-stage server/client seconds and bytes from "
        "the federation's timings under 'stages'",
        "params": {
            "poly_modulus_degree": d.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(d.coeff_mod_bit_sizes),
            "scale_bits": d.scale_bits,
            "round_bits": d.round_bits,
            "level_primes": d.level_primes,
            "download_primes": d.download_level,
            "bound_shift_bits": d.bound_shift_bits,
        },
        "steps": {},
        "rounds": [],
        "transfer": [],
    }
    warm_up()
    for L in [100_000] if args.quick else [100_000, 126_003, 1_000_000]:
        result["transfer"].extend(transfer(L))
    for L in [] if args.transfer_only else sizes:
        result["steps"][str(L)] = steps(L, args.repeats)
        print(f"L={L}: {json.dumps(result['steps'][str(L)])}", flush=True)
        for n in counts:
            r = rounds(L, n)
            result["rounds"].append(r)
            print(json.dumps({k: v for k, v in r.items() if not k.endswith("stages")}), flush=True)
    result["size_L"] = 8 * 8192
    result["size_options"] = size_options(result["size_L"])
    for o in result["size_options"]:
        print(f"{o['bytes_per_param']:7.2f} B/param  {o['option']}")
    result["loadavg_at_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ckks_transfer" if args.transfer_only else "ckks"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.json and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
