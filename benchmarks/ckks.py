"""CKKS aggregation cost: time per step and bytes per parameter, against the plain round.

For L in {1e5, 1e6} parameters and n in {3, 10, 50} clients (``--quick``: 1e5 with 3 and 10):

- per-client steps, median of ``--repeats`` after a warm-up: encrypt (encode + seeded symmetric
  encryption), serialise, coordinator deserialise + check + add (one client's input), serialise
  the sum, decrypt (deserialise the sum, decrypt, decode, round);
- one whole round through :class:`fedcore.he.driver.InProcessDriver` (every message serialised),
  and the ``plain`` round through the same driver on the same jobs: the time and byte ratios;
- bytes per parameter of each encoding option (TenSEAL's ``CKKSVector`` as the naive baseline);
- upload and download bytes per parameter before and after the served sum was switched down to
  one prime, in the same run on the same jobs (:func:`transfer`): "before" is the sum at the
  upload level under the previous default moduli [60, 40, 60] (what the coordinator served until
  then, byte for byte), "after" the default; also the upload-level fallback and the one-prime
  upload (``max_abs <= 2^14``), at 1e5, the DPK-GAT size (126,003) and 1e6 parameters.

Writes benchmarks/results/ckks.json and ckks.png. Run: ``python benchmarks/ckks.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import textwrap
import time
from pathlib import Path

import matplotlib
import numpy as np
import tenseal as ts

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedcore.common.aggregation import ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.he import pack
from fedcore.he.client import CkksClient
from fedcore.he.context import PublicContext, SecretContext
from fedcore.he.driver import InProcessDriver
from fedcore.he.params import CkksParams
from fedcore.he.server import CkksServer
from fedcore.plain import PlainClient, PlainServer
from fedcore.transport.certs import Credentials, create_ca, issue_client

RESULTS = Path(__file__).resolve().parent / "results"
FED = "bench"


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
    total = public.add_into(None, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b"))
    sum_blobs = public.dump_ciphertexts(total)
    low_blobs = public.dump_ciphertexts(public.switch_down(total, p.download_level))

    acc = public.load_ciphertexts(sum_blobs, count=count, max_bytes=public.max_sum_bytes, what="s")

    def deser_add():  # one client's input into a running sum (which grows a little each call)
        public.add_into(acc, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b"))

    def decrypt(blobs_, primes):
        cts = secret.load_ciphertexts(blobs_, count=count, max_bytes=secret.sum_bytes_limit(primes), what="s",
                                      primes=primes)
        pack.to_grid(secret.decrypt(cts, p.frame_length(L))[:-1], p.round_bits)

    return {
        "encrypt_s": median_time(lambda: secret.encrypt_objects(frame), repeats),
        "serialise_s": median_time(lambda: secret.dump_ciphertexts(objs), repeats),
        "server_deserialise_add_s": median_time(deser_add, repeats),
        "server_switch_down_serialise_sum_s": median_time(
            lambda: public.dump_ciphertexts(public.switch_down(total, p.download_level)), repeats),
        "server_serialise_sum_upload_level_s": median_time(lambda: public.dump_ciphertexts(total), repeats),
        "decrypt_s": median_time(lambda: decrypt(low_blobs, p.download_level), repeats),
        "decrypt_upload_level_s": median_time(lambda: decrypt(sum_blobs, p.level_primes), repeats),
        "ciphertexts": count,
        "upload_bytes_per_param": sum(map(len, blobs)) / L,
        "sum_bytes_per_param": sum(map(len, low_blobs)) / L,
        "sum_bytes_per_param_upload_level": sum(map(len, sum_blobs)) / L,
    }


def identity(ca: Credentials, client_id: str) -> ClientIdentity:
    cred = issue_client(ca, client_id)
    return ClientIdentity(client_id, cred.cert_pem, cred.key_pem, ca.cert_pem)


def rounds(L: int, n: int, ca: Credentials) -> dict:
    """One ckks round and one plain round through the driver, on the same jobs."""
    rng = np.random.default_rng(n)
    ids = [f"client-{i:02d}" for i in range(n)]
    vectors = {c: rng.normal(scale=0.01, size=L) for c in ids}
    weights = {c: float(rng.integers(20, 300)) for c in ids}

    def jobs():
        return {c: ClientJob(1, 0, vectors[c], weights[c]) for c in ids}

    plain_server = PlainServer(FED, {})
    plain = InProcessDriver(plain_server, {c: PlainClient(None, FED, {}) for c in ids})
    t0 = time.perf_counter()
    plain_res, plain_stats = plain.run_round(1, jobs())
    plain_s = time.perf_counter() - t0

    server = CkksServer(FED, {})
    clients = {c: CkksClient(identity(ca, c), FED, {}) for c in ids}
    drv = InProcessDriver(server, clients)
    t0 = time.perf_counter()
    drv.setup()
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, stats = drv.run_round(1, jobs())
    ckks_s = time.perf_counter() - t0
    up = stats[0].bytes_up / (n * L)
    plain_up = plain_stats[0].bytes_up / (n * L)
    err = np.linalg.norm(res.weighted_sum - plain_res.weighted_sum) / np.linalg.norm(plain_res.weighted_sum)
    return {
        "L": L, "clients": n, "setup_s": setup_s, "ckks_round_s": ckks_s, "plain_round_s": plain_s,
        "time_ratio": ckks_s / plain_s,
        "client_encrypt_stage_s_median": statistics.median(stats[0].client_seconds.values()),
        "client_decrypt_stage_s_median": statistics.median(stats[1].client_seconds.values()),
        "server_s": sum(s.server_seconds for s in stats),
        "upload_bytes_per_param": up, "plain_upload_bytes_per_param": plain_up, "bytes_ratio": up / plain_up,
        "download_bytes_per_param_per_client": stats[1].bytes_down / (n * L),
        "relative_error_vs_plain": float(err),
    }


#: (name, ckks settings, what a client downloads: "primary" the served sum, "before" the sum at the
#: upload level only (the coordinator's behaviour until then), "fallback" both)
TRANSFER_CONFIGS = (
    ("before: [60,40,60], sum served at the upload level (previous default)", {"coeff_mod_bit_sizes": [60, 40, 60]},
     "before"),
    ("[60,40,60], sum switched to its 60-bit prime", {"coeff_mod_bit_sizes": [60, 40, 60]}, "primary"),
    ("after: default [57,40,60], sum switched to its 57-bit prime", {}, "primary"),
    ("default, fallback: peaks add up beyond 2^14, the upload-level sum fetched too", {}, "fallback"),
    ("default with max_abs <= 2^14: one-prime upload and sum", {"max_abs": 2.0 ** 14}, "primary"),
)


def transfer(L: int, ca: Credentials, n: int = 3) -> list[dict]:
    """Bytes up and down per client and parameter for each of :data:`TRANSFER_CONFIGS`, one
    round each through the driver on the same jobs (the upload-level sum is measured as it stands
    when the decrypt stage opens: what the coordinator used to serve)."""
    rng = np.random.default_rng(7)
    ids = [f"client-{i:02d}" for i in range(n)]
    vectors = {c: rng.normal(scale=0.01, size=L) for c in ids}
    weights = {c: float(rng.integers(20, 300)) for c in ids}
    want = sum(weights[c] * vectors[c] for c in ids)
    out = []
    for name, settings, which in TRANSFER_CONFIGS:
        server = CkksServer(FED, settings)
        drv = InProcessDriver(server, {c: CkksClient(identity(ca, c), FED, settings) for c in ids})
        drv.setup()
        seen = {}

        def tamper(stage, cid, direction, data, server=server, seen=seen):
            if stage == Stage.CKKS_DECRYPT and direction == "down" and "full" not in seen:
                r = server._round
                seen["full"] = len(server._sum_message(r, r.total)) if r.total is not None else len(r.blob)
            return data
        drv.tamper = tamper
        res, stats = drv.run_round(1, {c: ClientJob(1, 0, vectors[c], weights[c]) for c in ids})
        task_bytes = stats[1].bytes_down / n - len(server._round.blob)  # the decrypt task itself
        served = {"primary": len(server._round.blob), "before": seen["full"],
                  "fallback": len(server._round.blob) + seen["full"]}[which]
        out.append({"config": name, "L": L, "clients": n, "upload_bytes_per_param": stats[0].bytes_up / (n * L),
                    "download_bytes_per_param": (served + task_bytes) / L,
                    "sum_blob_bytes_per_param": served / L,
                    "upload_primes": server.params.level_primes,
                    "download_primes": server.params.download_level if which == "primary" else server.params.level_primes,
                    "weighted_sum_checked": which == "primary",
                    "relative_error_vs_float64": float(np.linalg.norm(res.weighted_sum - want) / np.linalg.norm(want))})
        print(f"  L={L}: up {out[-1]['upload_bytes_per_param']:6.2f}  down {out[-1]['download_bytes_per_param']:6.2f}"
              f"  {name}", flush=True)
    return out


def size_options(L: int) -> list[dict]:
    """Bytes per parameter (and the max error of one encrypt/decrypt) of each way to encrypt."""
    x = np.random.default_rng(1).normal(size=L)
    out = []

    def tenseal(name, chain, enc_type, chunked):
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=chain, encryption_type=enc_type)
        ctx.global_scale = 2.0 ** 40
        t0 = time.perf_counter()
        if chunked:
            vecs = [ts.ckks_vector(ctx, x[i:i + 4096].tolist()) for i in range(0, L, 4096)]
        else:
            vecs = [ts.ckks_vector(ctx, x.tolist())]
        blobs = [v.serialize() for v in vecs]
        dt = time.perf_counter() - t0
        got = np.concatenate([np.array(v.decrypt()) for v in vecs])
        out.append({"option": name, "bytes_per_param": sum(map(len, blobs)) / L, "encrypt_serialise_s": dt,
                    "max_abs_error": float(np.abs(got - x).max())})

    tenseal("TenSEAL CKKSVector, public key, [60,40,60] (naive)", [60, 40, 60], ts.ENCRYPTION_TYPE.ASYMMETRIC, False)
    tenseal("TenSEAL CKKSVector chunked (4096 slots each), public key", [60, 40, 60], ts.ENCRYPTION_TYPE.ASYMMETRIC, True)
    tenseal("TenSEAL CKKSVector, ENCRYPTION_TYPE.SYMMETRIC (not seeded)", [60, 40, 60], ts.ENCRYPTION_TYPE.SYMMETRIC, False)
    tenseal("TenSEAL CKKSVector, [60,40]: one 60-bit data prime", [60, 40], ts.ENCRYPTION_TYPE.SYMMETRIC, False)
    for name, params in (("fedcore: seeded symmetric + complex packing, top level (default)", CkksParams()),
                         ("fedcore: same at one 57-bit prime (max_abs <= 2^14)", CkksParams(max_abs=2.0 ** 14))):
        secret = SecretContext(params)
        t0 = time.perf_counter()
        blobs = secret.encrypt(x)
        dt = time.perf_counter() - t0
        cts = secret.load_ciphertexts(blobs, count=len(blobs), max_bytes=secret.max_input_bytes, what="x")
        got = secret.decrypt(cts, L)
        out.append({"option": name, "bytes_per_param": sum(map(len, blobs)) / L, "encrypt_serialise_s": dt,
                    "max_abs_error": float(np.abs(got - x).max())})
        full = secret.dump_ciphertexts(cts)
        out.append({"option": name.replace("fedcore: ", "fedcore, unseeded (a sum at this level): "),
                    "bytes_per_param": sum(map(len, full)) / L, "encrypt_serialise_s": None, "max_abs_error": None})
        if params.level_primes > params.download_level:
            low = secret.dump_ciphertexts(secret.switch_down(cts, params.download_level))
            out.append({"option": "fedcore, the served sum: switched down to the 57-bit prime (default)",
                        "bytes_per_param": sum(map(len, low)) / L, "encrypt_serialise_s": None, "max_abs_error": None})
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
        bars = c.bar(np.arange(len(Ls)) + (i - len(configs) / 2 + 0.5) * width, ys, width,
                     label=textwrap.fill(name, 48))
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
    a.set_ylabel("seconds per round (one process, all clients)")
    a.set_title("Round time through the in-process driver")
    a.legend()
    opts = result["size_options"]
    colours = ["tab:gray" if o["option"].startswith("TenSEAL") else "tab:olive" if o["option"].startswith("plain")
               else "tab:purple" for o in opts]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e5 parameters with 3 and 10 clients only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--transfer-only", action="store_true", help="only the bytes before/after (no timings)")
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    counts = [3, 10] if args.quick else [3, 10, 50]
    ca = create_ca()
    d = CkksParams()
    result = {"machine": platform.platform(), "python": platform.python_version(), "tenseal": ts.__version__,
              "loadavg_at_start": list(os.getloadavg()), "cpus": os.cpu_count(), "nice": os.nice(0),
              "params": {"poly_modulus_degree": d.poly_modulus_degree, "coeff_mod_bit_sizes": list(d.coeff_mod_bit_sizes),
                         "scale_bits": d.scale_bits, "round_bits": d.round_bits, "level_primes": d.level_primes,
                         "download_primes": d.download_level, "bound_shift_bits": d.bound_shift_bits},
              "steps": {}, "rounds": [], "transfer": []}
    rounds(1000, 3, ca)  # warm-up of the whole path
    for L in ([100_000] if args.quick else [100_000, 126_003, 1_000_000]):
        result["transfer"].extend(transfer(L, ca))
    for L in ([] if args.transfer_only else sizes):
        result["steps"][str(L)] = steps(L, args.repeats)
        print(f"L={L}: {json.dumps(result['steps'][str(L)])}", flush=True)
        for n in counts:
            r = rounds(L, n, ca)
            result["rounds"].append(r)
            print(json.dumps(r), flush=True)
    result["size_L"] = 8 * 8192
    result["size_options"] = size_options(result["size_L"])
    for o in result["size_options"]:
        print(f"{o['bytes_per_param']:7.2f} B/param  {o['option']}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ckks_transfer" if args.transfer_only else "ckks"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.json and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
