"""CKKS aggregation cost: time per step and bytes per parameter, against the plain round.

For L in {1e5, 1e6} parameters and n in {3, 10, 50} clients (``--quick``: 1e5 with 3 and 10):

- per-client steps, median of ``--repeats`` after a warm-up: encrypt (encode + seeded symmetric
  encryption), serialise, coordinator deserialise + check + add (one client's input), serialise
  the sum, decrypt (deserialise the sum, decrypt, decode, round);
- one whole round through :class:`fedcore.he.driver.InProcessDriver` (every message serialised),
  and the ``plain`` round through the same driver on the same jobs: the time and byte ratios;
- bytes per parameter of each encoding option (TenSEAL's ``CKKSVector`` as the naive baseline).

Writes benchmarks/results/ckks.json and ckks.png. Run: ``python benchmarks/ckks.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
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
    frame = pack.frame(np.random.default_rng(0).normal(scale=0.01, size=L), 100.0)
    count = secret.params.num_ciphertexts(L + 2)
    objs = secret.encrypt_objects(frame)
    blobs = secret.dump_ciphertexts(objs)
    total = public.add_into(None, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b"))
    sum_blobs = public.dump_ciphertexts(total)

    acc = public.load_ciphertexts(sum_blobs, count=count, max_bytes=public.max_sum_bytes, what="s")

    def deser_add():  # one client's input into a running sum (which grows a little each call)
        public.add_into(acc, public.load_ciphertexts(blobs, count=count, max_bytes=public.max_input_bytes, what="b"))

    def decrypt():
        cts = secret.load_ciphertexts(sum_blobs, count=count, max_bytes=secret.max_sum_bytes, what="s")
        pack.to_grid(secret.decrypt(cts, L + 2), secret.params.round_bits)

    return {
        "encrypt_s": median_time(lambda: secret.encrypt_objects(frame), repeats),
        "serialise_s": median_time(lambda: secret.dump_ciphertexts(objs), repeats),
        "server_deserialise_add_s": median_time(deser_add, repeats),
        "server_serialise_sum_s": median_time(lambda: public.dump_ciphertexts(total), repeats),
        "decrypt_s": median_time(decrypt, repeats),
        "ciphertexts": count,
        "upload_bytes_per_param": sum(map(len, blobs)) / L,
        "sum_bytes_per_param": sum(map(len, sum_blobs)) / L,
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
                         ("fedcore: same at one 60-bit prime (max_abs <= 2^17)", CkksParams(max_abs=2.0 ** 17))):
        secret = SecretContext(params)
        t0 = time.perf_counter()
        blobs = secret.encrypt(x)
        dt = time.perf_counter() - t0
        cts = secret.load_ciphertexts(blobs, count=len(blobs), max_bytes=secret.max_input_bytes, what="x")
        got = secret.decrypt(cts, L)
        out.append({"option": name, "bytes_per_param": sum(map(len, blobs)) / L, "encrypt_serialise_s": dt,
                    "max_abs_error": float(np.abs(got - x).max())})
        full = secret.dump_ciphertexts(cts)
        out.append({"option": name.replace("fedcore: ", "fedcore, unseeded (the served sum): "),
                    "bytes_per_param": sum(map(len, full)) / L, "encrypt_serialise_s": None, "max_abs_error": None})
    out.append({"option": "plain float64", "bytes_per_param": 8.0, "encrypt_serialise_s": None, "max_abs_error": 0.0})
    return out


def plot(result: dict, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    rs = result["rounds"]
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
    b.axvline(30, color="k", ls="--", lw=1, label="target 30 B/param")
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
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    counts = [3, 10] if args.quick else [3, 10, 50]
    ca = create_ca()
    result = {"machine": platform.platform(), "python": platform.python_version(), "tenseal": ts.__version__,
              "params": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 60], "scale_bits": 40,
                         "round_bits": CkksParams().round_bits, "level_primes": CkksParams().level_primes},
              "steps": {}, "rounds": []}
    rounds(1000, 3, ca)  # warm-up of the whole path
    for L in sizes:
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
    (args.out / "ckks.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "ckks.png")
    print(f"wrote {args.out / 'ckks.json'} and ckks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
