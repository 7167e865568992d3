"""The report of ``supernet_fidelity.py``: rank statistics, gains over uniform and the Markdown page."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def gains_over_uniform(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean ground truth minus the uniform candidate's, per kind of candidate (``winner``, ``random``): is
    uniform a better structure than a random one, and did the searches find better ones? A row counts for a
    kind if any of its names (``same_as`` included) is of that kind. The SE combines the spread of the kind's
    truths (over its candidates) with the uniform truth's own test SE."""
    uniform = next((r for r in rows if r["name"] == "uniform"), None)
    out: dict[str, dict[str, float]] = {}
    for kind in ("winner", "random"):
        truths = [r["truth_test"] for r in rows if r is not uniform
                  and any(n.startswith(kind + "-") for n in [r["name"], *r.get("same_as", [])])]
        if uniform is None or len(truths) < 2:
            continue
        mean = sum(truths) / len(truths)
        var = sum((t - mean) ** 2 for t in truths) / (len(truths) - 1) / len(truths)
        out[kind] = {"n": len(truths), "mean_minus_uniform": mean - uniform["truth_test"],
                     "se": math.sqrt(var + uniform["truth_test_se"] ** 2)}
    return out


def spreads(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, float]]:
    """Per score (``KEY_val``) and the ground truth (``truth_test``): the standard deviation over the candidates
    and the best candidate's value minus the uniform one's. A score whose spread is much smaller than the
    truth's compresses the differences between structures that a search must find."""
    uniform = next((r for r in rows if r["name"] == "uniform"), None)
    out: dict[str, dict[str, float]] = {}
    for key in [*(f"{k}_val" for k in keys), "truth_test"]:
        values = [r[key] for r in rows if key in r]
        if len(values) < 2 or uniform is None or key not in uniform:
            continue
        out[key] = {"std": float(np.std(values, ddof=1)), "best_minus_uniform": max(values) - uniform[key]}
    return out


def rank_stats(x: list[float], y: list[float], seed: int, reps: int = 2000) -> dict[str, Any]:
    """Kendall's tau and Spearman's rho of ``x`` vs ``y`` with percentile bootstrap 95% intervals."""
    xa, ya = np.asarray(x), np.asarray(y)
    tau = float(stats.kendalltau(xa, ya).statistic)
    rho = float(stats.spearmanr(xa, ya).statistic)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(reps):
        i = rng.integers(0, len(xa), len(xa))
        if len(set(xa[i])) < 2 or len(set(ya[i])) < 2:
            continue
        taus.append(stats.kendalltau(xa[i], ya[i]).statistic)
        rhos.append(stats.spearmanr(xa[i], ya[i]).statistic)
    ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    return {"kendall_tau": tau, "kendall_tau_ci95": ci(taus), "spearman_rho": rho, "spearman_rho_ci95": ci(rhos),
            "n": len(xa)}


def rerender(path: Path) -> None:
    if not path.exists():
        raise SystemExit(f"--rerender: {path} does not exist: run the benchmark first (same --model/--target/--name)")
    result = json.loads(path.read_text())
    if any(r["name"] == "uniform" for r in result["rows"]):
        result["gains_over_uniform"] = gains_over_uniform(result["rows"])
        result["spread"] = spreads(result["rows"], ["supernet", "cut", *result.get("also", [])])
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(render(result))


def _also_label(name: str) -> str:
    if name.startswith("calib-"):  # calib-SPLIT-BATCHES: the same supernet, another calibration
        _, split, count = name.split("-")
        return f"supernet score, adaptive BN on {count} batches from the {split} split (`{name}`)"
    if name.startswith("ft-"):  # ft-SOURCE-STEPS[-lrX]: a short finetune before the score
        source, steps = name.split("-")[1:3]
        origin = "the supernet's shared weights" if source == "supernet" else "cut from the dense model"
        return f"{origin} + {steps} finetune steps, then scored (`{name}`)"
    return f"supernet `{name}` score"


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"# Supernet ranking fidelity: {s['model']} on {s['dataset']} at {s['target']:.0%} of the MACs", "",
             f"{len(r['rows'])} distinct candidates. Scores on {s['dataset']} validation (adaptive BN on "
             f"{s['bn_batches']} batches of 64 from the validation split); ground truth: the structure cut from "
             "the dense model and finetuned "
             f"{s['finetune_epochs']} epochs (lr {s['finetune_lr']}, {s.get('precision', 'fp32')}), test accuracy.", ""]
    for key, label in (("supernet_vs_truth", "supernet score (what the search ranks by)"),
                       ("cut_vs_truth", "cut-from-dense score (sub-model sampling's signal)"),
                       *((f"{o}_vs_truth", _also_label(o)) for o in r.get("also", []))):
        if key in r:
            q = r[key]
            lines.append(f"- {label}: Kendall tau **{q['kendall_tau']:.2f}** (95% bootstrap "
                         f"[{q['kendall_tau_ci95'][0]:.2f}, {q['kendall_tau_ci95'][1]:.2f}]), Spearman rho "
                         f"{q['spearman_rho']:.2f} [{q['spearman_rho_ci95'][0]:.2f}, {q['spearman_rho_ci95'][1]:.2f}]")
    if "noise_reference" in r:
        q = r["noise_reference"]
        lines.append(f"- noise reference: the finetuned models' own validation accuracy (the ground truth read on "
                     f"the validation split) ranks at Kendall tau **{q['kendall_tau']:.2f}** "
                     f"([{q['kendall_tau_ci95'][0]:.2f}, {q['kendall_tau_ci95'][1]:.2f}]), Spearman rho "
                     f"{q['spearman_rho']:.2f} against their test accuracy: what finite evaluation splits alone "
                     "allow. A score read on validation is not expected to rank much above it (one free of "
                     "validation noise could rank somewhat higher; finetuning noise is not in it).")
    if "headroom" in r:
        h = r["headroom"]
        lines.append(f"- headroom: the best candidate's ground truth (`{h['best']}`) is "
                     f"**{100 * h['best_minus_uniform']:+.2f} ± {100 * h['se']:.2f} points** from the uniform "
                     f"candidate's ({h['above_uniform']} of {len(r['rows'])} candidates above it; all within "
                     f"{100 * h['range']:.2f} points): the most a perfect ranking could gain over uniform here, "
                     "read as the largest of many noisy values (so biased upward).")
    labels = {"winner": "the searches' candidates", "random": "the random candidates"}
    for kind, g in r.get("gains_over_uniform", {}).items():
        lines.append(f"- {labels[kind]} ({g['n']}), mean ground truth minus uniform's: "
                     f"**{100 * g['mean_minus_uniform']:+.2f} ± {100 * g['se']:.2f} points**")
    nets = [o for o in r.get("also", []) if not o.startswith("calib-")]  # other supernets: a column each
    if r.get("spread"):
        parts = [f"{'ground truth' if k == 'truth_test' else '`' + k[:-4] + '`'} {100 * v['std']:.2f} (best − uniform "
                 f"{100 * v['best_minus_uniform']:+.2f})" for k, v in r["spread"].items()]
        lines.append("- spread over the candidates, standard deviation in points: " + ", ".join(parts) + ". A score "
                     "that spreads the structures much less than the ground truth compresses the differences a "
                     "search must find.")
    lines += ["", "| candidate | MACs ratio | supernet score (val) | " + "".join(f"`{o}` score (val) | " for o in nets)
              + "cut score (val) | cut + finetune (test ± SE) |", "|---|---|---|---|" + "---|" * (len(nets) + 1)]
    for row in sorted(r["rows"], key=lambda x: -x["truth_test"]):
        reps = row.get("truth_test_replicates")
        more = f" (mean of {len(reps)} finetunes: {', '.join(f'{v:.4f}' for v in reps)})" if reps else ""
        also = "".join(f" = {n}" for n in row.get("same_as", []))
        lines.append(f"| {row['name']}{also} | {row['macs_ratio']:.3f} | {row['supernet_val']:.4f} | "
                     + "".join(f"{row[f'{o}_val']:.4f} | " for o in nets)
                     + f"{row['cut_val']:.4f} | {row['truth_test']:.4f} ± {row['truth_test_se']:.4f}{more} |")
    lines += ["", f"Command: `{r['command']}`; {r['machine']}, {r['cpus']} CPUs."]
    return "\n".join(lines) + "\n"
