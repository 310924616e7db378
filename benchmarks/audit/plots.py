"""The privacy-audit figure: inversion similarity, example reconstructions, MIA ROC and TPR vs eps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .membership import dp_tpr_bound

_BASE_STYLE = {"random sample": ("tab:red", "--"), "mean image": ("tab:purple", ":"), "noise": ("0.4", "-.")}


def _rgb(img: np.ndarray) -> np.ndarray:
    """(3, H, W) flow image in [-1, 1] (u, v, strain) -> (H, W, 3) RGB in [0, 1]."""
    return np.clip((np.transpose(img, (1, 2, 0)) + 1.0) / 2.0, 0.0, 1.0)


def _bars(ax, inv: dict, metric: str, base_key: str, ylabel: str) -> None:
    names = list(inv["settings"])
    means = [inv["settings"][n][metric]["mean"] for n in names]
    sds = [inv["settings"][n][metric]["sd"] for n in names]
    colors = [
        "tab:blue" if n == "plain" else "tab:orange" if "sum" in n else "tab:gray" if "masked" in n else "tab:green"
        for n in names
    ]
    ax.bar(range(len(names)), means, yerr=sds, color=colors, capsize=3)
    for key, (c, ls) in _BASE_STYLE.items():
        ax.axhline(inv[base_key][key]["mean"], color=c, ls=ls, lw=1.2, label=f"baseline: {key}")
    if metric == "cosine":
        for j, n in enumerate(names):
            ax.text(
                j,
                max(means[j] + sds[j], 0) + 0.02,
                f"{inv['settings'][n]['label_accuracy']:.0%}",
                ha="center",
                fontsize=6,
            )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.25 * (hi - lo))  # room for the legend above the bars
    ax.legend(fontsize=6, loc="upper center", ncol=3)


def _examples(ax, examples: dict, settings: list[str]) -> None:
    """One column per setting (the true image first), one row per example target."""
    cols = [c for c in ["truth", *settings] if c in examples]
    rows = len(examples["truth"])
    h, w = examples["truth"][0].shape[1:]
    pad = 3
    canvas = np.ones((rows * (h + pad), len(cols) * (w + pad), 3))
    for r in range(rows):
        for c, name in enumerate(cols):
            canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = _rgb(examples[name][r])
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([c * (w + pad) + w / 2 for c in range(len(cols))], cols, fontsize=7, rotation=30, ha="right")
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(rows)], [f"target {r + 1}" for r in range(rows)], fontsize=7)
    ax.set_title("example reconstructions (u, v, strain shown as R, G, B; [-1, 1] -> [0, 1])", fontsize=8)


def _roc(ax, mia: dict, attack: str) -> None:
    for i, (key, res) in enumerate(mia["by_epsilon"].items()):
        roc = res["attacks"][attack]["roc"]
        c = f"C{i}"
        ax.plot(
            np.maximum(roc["fpr"], 1e-4),
            np.maximum(roc["tpr"], 1e-4),
            color=c,
            drawstyle="steps-post",
            label=f"eps={key} (AUC {res['attacks'][attack]['auc']:.2f})",
        )
        if key != "inf":
            f = np.logspace(-4, 0, 200)
            ax.plot(f, dp_tpr_bound(f, float(key), res["delta"]), color=c, ls=":", lw=1)
    ax.plot([1e-4, 1], [1e-4, 1], color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1.05)
    ax.set_xlabel("FPR", fontsize=8)
    ax.set_ylabel("TPR", fontsize=8)
    ax.set_title(f"{attack} attack ROC (dotted: DP bound e^eps FPR + delta)", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def _vs_eps(ax, mia: dict) -> None:
    keys = list(mia["by_epsilon"])
    xs = np.arange(len(keys))
    for attack, marker in (("lira", "o"), ("loss", "s")):
        for metric, ls in (("tpr_at_0.01_fpr", "-"), ("auc", "--")):
            ys = [mia["by_epsilon"][k]["attacks"][attack][metric] for k in keys]
            ax.plot(xs, ys, marker=marker, ls=ls, label=f"{attack} {metric.replace('_', ' ')}")
    bound = [mia["by_epsilon"][k]["attacks"]["lira"]["dp_bound_at_0.01_fpr"] for k in keys]
    ax.plot(xs, bound, color="k", ls=":", marker="^", label="DP bound on TPR at 1 % FPR")
    ax.axhline(0.5, color="0.7", lw=0.8)
    ax.set_xticks(xs, [f"eps={k}" for k in keys], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(
        f"MIA vs epsilon ({mia['members']} members / {mia['non_members']} non-members, {mia['shadows']} shadows)",
        fontsize=8,
    )
    ax.legend(fontsize=6)


def plot_audit(report: dict, examples: dict, path: Path) -> None:
    inv, mia = report["inversion"], report["membership"]
    fig = plt.figure(figsize=(16, 14))
    grid = fig.add_gridspec(3, 3, height_ratios=[1.0, 0.75, 1.0])
    top = [fig.add_subplot(grid[0, 0:2]), fig.add_subplot(grid[0, 2])]
    _bars(top[0], inv, "cosine", "baselines", "cosine(reconstruction, target)")
    top[0].set_title(
        f"gradient inversion, {inv['model']} {inv['input_shape']} "
        f"({len(inv['targets'])} targets, mean ± sd; label hit rate on top)",
        fontsize=8,
    )
    _bars(top[1], inv, "psnr", "baselines_psnr", "PSNR (dB, peak 2)")
    top[1].set_title("reconstruction PSNR", fontsize=8)
    _examples(fig.add_subplot(grid[1, :]), examples, list(inv["settings"]))
    _roc(fig.add_subplot(grid[2, 0]), mia, "lira")
    _roc(fig.add_subplot(grid[2, 1]), mia, "loss")
    _vs_eps(fig.add_subplot(grid[2, 2]), mia)
    fig.suptitle(f"FED-PsyAU privacy audit ({report['mode']} run, {report['data']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
