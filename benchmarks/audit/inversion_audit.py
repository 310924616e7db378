"""The gradient-inversion audit: attack what each party sees of single-sample updates.

For every target sample x (with label y) and every setting, the attacker gets one vector of the
length of the model's parameters and the round-1 global model (the attack is strongest on a
fresh model: large, informative gradients). Settings:

``plain``              the target client's own update (= -grad; FedAvg without SecAgg).
``secagg-sum K=k``     the unmasked sum of k single-sample updates (the target's and k - 1 other
                       samples') from a real SecAgg+ round; the coordinator learns only this.
                       k = 2 is refused by the protocol (min_clients = 3): there the attacked sum
                       is computed directly, to show what a two-client round would reveal.
``secagg-masked K=k``  the target client's masked vector as the coordinator receives it.
``dp eps=e``           the target client's DP-SGD update (Opacus clip C = 1 + Gaussian noise)
                       with the noise multiplier that gives a realistic client (n, batch,
                       rounds in the config) epsilon e; ``dp sigma=s`` a fixed, weaker noise
                       (its epsilon for the same client is reported).

The attacker flips the sign (it knows lr = 1), reads the label with iDLG, and runs gradient
matching (:func:`.inversion.invert_gradient`). Reported per setting: reconstruction similarity
to the target (cosine, MSE, PSNR), for sums also the best match over the k members, the label
hit rate, and ``grad_cosine``, the cosine between the attacked vector and the target's true
gradient (how much of the target's signal the view carries). Baselines use no gradient at all: a
random other sample of the data set, the data-set mean image (without the target), and Gaussian
noise with the data set's per-channel mean and spread.
"""

from __future__ import annotations

import numpy as np
import torch

from fedcore.dp.accounting import epsilon as dp_epsilon
from mer.model import LossWeights, build_model, per_sample_loss
from mer.train.centralised import to_input

from . import inversion as inv
from . import views


def _emotion_loss(outputs, y):
    zeros = torch.zeros(len(y), 12)
    return per_sample_loss(outputs, y, zeros, torch.zeros(len(y), dtype=torch.bool), LossWeights()).mean()


def _client_loss(outputs, y, au, known):
    return per_sample_loss(outputs, y, au, known, LossWeights()).mean()


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def run_inversion(flow: np.ndarray, label: np.ndarray, cfg: dict, log=print) -> tuple[dict, dict]:
    """Run every setting of ``cfg`` on ``cfg['targets']`` targets; returns (report, example images)."""
    rng = np.random.default_rng(cfg["seed"])
    torch.manual_seed(cfg["model_seed"])
    model = build_model(cfg["model"], int(label.max()) + 1, **cfg["model_options"]).train()
    x_all = to_input(flow, model.input_size, torch.device("cpu"))  # (N, 3, S, S)
    n = len(x_all)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    last_w, last_b = names.index(cfg["classifier"] + ".weight"), names.index(cfg["classifier"] + ".bias")
    pool = np.setdiff1d(np.arange(n), cfg["tuning_samples"])
    targets = rng.choice(pool, cfg["targets"], replace=False)
    attack = inv.InversionConfig(**cfg["attack"])
    dp_map = views.dp_noise_for_epsilons(cfg["dp_epsilons"], **cfg["dp_client"])
    noise = [(f"dp eps={r['target_epsilon']:g}", r["noise_multiplier"]) for r in dp_map["rows"]]
    noise += [(f"dp sigma={s:g}", s) for s in cfg["dp_weak_sigmas"]]
    weak_eps = {
        f"dp sigma={s:g}": dp_epsilon(dp_map["sample_rate"], s, dp_map["steps"], dp_map["delta"])
        for s in cfg["dp_weak_sigmas"]
    }
    refusals = {k: views.secagg_refusal(k) for k in cfg["secagg_k"]}

    def update_of(i: int, sigma: float | None = None, seed: int = 0) -> np.ndarray:
        t = (
            x_all[i : i + 1],
            torch.as_tensor(label[i : i + 1], dtype=torch.int64),
            torch.zeros(1, 12),
            torch.zeros(1, dtype=torch.bool),
        )
        return views.client_update(model, _client_loss, t, noise_multiplier=sigma, seed=seed)

    mean_std = (x_all.mean(dim=(0, 2, 3)), x_all.std(dim=(0, 2, 3)))
    rows: dict[str, list[dict]] = {}
    baselines: dict[str, list[float]] = {
        "random sample": [],
        "mean image": [],
        "noise": [],
        **{f"random sample best of {k}": [] for k in cfg["secagg_k"]},
    }
    baseline_psnr: dict[str, list[float]] = {"random sample": [], "mean image": [], "noise": []}
    examples: dict[str, list[np.ndarray]] = {"truth": []}
    secagg_notes: dict[str, dict] = {}
    for ti, i in enumerate(targets):
        truth = x_all[i : i + 1]
        own = update_of(i)
        others = rng.choice(np.setdiff1d(np.arange(n), [i]), max(cfg["secagg_k"]) - 1, replace=False)
        views_of: dict[str, tuple[np.ndarray, list[int]]] = {"plain": (own, [i])}
        other_updates = [update_of(j) for j in others]
        for k in cfg["secagg_k"]:
            members = [i, *others[: k - 1]]
            ups = [own, *other_updates[: k - 1]]
            if refusals[k] is None:
                view = views.secagg_view(ups)
                note = secagg_notes.setdefault(
                    f"K={k}",
                    {
                        **{key: view.notes[key] for key in ("bits", "frac_bits", "clip", "threshold")},
                        "rounds": 0,
                        "clipped_values": 0,
                    },
                )
                note["rounds"] += 1
                note["clipped_values"] += int(view.notes["clipped"])
                views_of[f"secagg-sum K={k}"] = (view.total, members)
                if k in cfg["masked_k"]:
                    views_of[f"secagg-masked K={k}"] = (view.masked[view.clients[0]], [i])
            else:
                views_of[f"secagg-sum K={k}"] = (np.sum(ups, axis=0), members)
        for s_i, (name, sigma) in enumerate(noise):
            views_of[name] = (update_of(i, sigma, seed=1000 * ti + s_i), [i])
        true_grad = -own
        if ti < cfg["examples"]:
            examples["truth"].append(truth[0].numpy())
        for name, (vec, members) in views_of.items():
            grads = inv.unflatten(torch.as_tensor(-vec, dtype=torch.float32), params)
            guess = inv.infer_label(grads[last_w], grads[last_b])
            res = inv.invert_gradient(model, _emotion_loss, grads, guess, tuple(truth.shape), attack)
            sim = inv.image_similarity(res.x, truth)
            best = max(inv.image_similarity(res.x, x_all[j : j + 1])["cosine"] for j in members)
            rows.setdefault(name, []).append(
                {
                    "target": int(i),
                    "label": int(label[i]),
                    "label_guess": guess,
                    "label_in_batch": guess in set(label[members].tolist()),
                    **sim,
                    "cosine_best_member": best,
                    "matching_loss": res.matching_loss,
                    "seconds": res.seconds,
                    "grad_cosine": float(vec @ -true_grad / (np.linalg.norm(vec) * np.linalg.norm(true_grad) + 1e-30)),
                }
            )
            if ti < cfg["examples"]:
                examples.setdefault(name, []).append(res.x[0].numpy())
        other = x_all[rng.choice(np.setdiff1d(np.arange(n), [i]))]
        mean_img = (x_all.sum(0) - truth[0]) / (n - 1)
        gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1000 + ti)
        noise_img = (
            torch.randn(truth.shape, generator=gen) * mean_std[1][:, None, None] + mean_std[0][:, None, None]
        ).clamp(-1, 1)
        for key, img in (("random sample", other), ("mean image", mean_img), ("noise", noise_img)):
            s = inv.image_similarity(img, truth)
            baselines[key].append(s["cosine"])
            baseline_psnr[key].append(s["psnr"])
        for k in cfg["secagg_k"]:
            outsiders = rng.choice(np.setdiff1d(np.arange(n), [i, *others[: k - 1]]), k, replace=False)
            members = [i, *others[: k - 1]]
            baselines[f"random sample best of {k}"].append(
                np.mean([max(inv.image_similarity(x_all[o], x_all[j])["cosine"] for j in members) for o in outsiders])
            )
        log(
            f"  inversion target {ti + 1}/{len(targets)} (sample {i}): "
            + ", ".join(f"{name} cos {rows[name][-1]['cosine']:.2f}" for name in ("plain", *list(views_of)[1:3]))
        )

    settings = {}
    for name, rs in rows.items():
        settings[name] = {
            m: _summary([r[m] for r in rs])
            for m in ("cosine", "mse", "psnr", "cosine_best_member", "grad_cosine", "matching_loss", "seconds")
        }
        settings[name]["label_accuracy"] = float(np.mean([r["label_guess"] == r["label"] for r in rs]))
        settings[name]["label_in_batch"] = float(np.mean([r["label_in_batch"] for r in rs]))
        settings[name]["per_target"] = rs
    report = {
        "model": cfg["model"],
        "model_options": cfg["model_options"],
        "input_shape": list(x_all.shape[1:]),
        "num_parameters": int(sum(p.numel() for p in params)),
        "targets": [int(t) for t in targets],
        "attack": attack.to_dict(),
        "settings": settings,
        "baselines": {k: _summary(v) for k, v in baselines.items()},
        "baselines_psnr": {k: _summary(v) for k, v in baseline_psnr.items()},
        "dp_mapping": {
            **dp_map,
            "weak_sigmas": [
                {"noise_multiplier": s, "epsilon": weak_eps[f"dp sigma={s:g}"]} for s in cfg["dp_weak_sigmas"]
            ],
        },
        "secagg": {"refused": {f"K={k}": r for k, r in refusals.items() if r}, "rounds": secagg_notes},
        "chance_label_accuracy": float(np.max(np.bincount(label)) / len(label)),
    }
    return report, examples
