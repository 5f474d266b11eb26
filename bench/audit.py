"""Audits on UCI Adult, for a default RandomForest (100 trees) and an MLP(64), each trained on a seed-0 half of the
data and attacked twice: with an uploaded population, and without one (the audit then holds half the non-members
out as its population). Every attack is printed with both, at 1 % and at 0.1 % FPR with the false positives the
0.1 % figure rests on, and the audit's wall time split into its parts. Anchored on the plain loss-threshold attack
of the same run.

Goals: forest audit ≤ 60 s on 2 cores; best ÷ loss TPR@1%FPR ≥ 10; the no-population headline ≥ 0.9 × the
population headline; forest TPR@1%FPR ≥ 17 % with 4 reference models (the issue's reading: 17.1 %, 19.5 % with 8,
against 14.0 % for a research RMIA implementation); MLP audit ≤ 120 s including online LiRA.

Evaluation design: members = the half the target trained on; the other half is split into 10,000 evaluation
non-members (2,000 with --quick) and a population for reference models and RMIA's z; as many members as evaluation
non-members are sampled (by content key), up to the default evaluation size (audit.DEFAULT_EVAL_RECORDS a side).

The reference pool is the population pool plus the members the audit does not evaluate (6,280 here with a
population, 8,139 without). The default tier includes online RMIA (its own 4 reference models, trained on half the
pool and half the evaluation records, ~15,900 rows against offline references' ~5,900, the target's 16,280): the
strongest attack here (24.6 % TPR@1%FPR with 4 references on the seed-0 split; 18.7 % when the pool held population
records only, 14.8 % for offline RMIA then, 21.4 % now).
The challengers beside the default tier, at its cost (the same 4 offline reference models): BASE (Lassila et al.
2025) and LiRA with a Bayesian per-record variance (Brännvall 2026); the quantile-regression screening attack
(Bertran et al. 2023) needs no reference models. The MLP also runs online LiRA (its own 4 reference models).

Usage: python bench/audit.py [--quick] [--model rf|mlp|both] [--attacks threshold,rmia,...] [--reference N] [--seed N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from audits.attacks import STANDARD_POLICIES, TIER_1, TIER_1_NAMES, AuditConfig, AuditData, run_attacks  # noqa: E402
from audits.attacks.audit import DEFAULT_EVAL_RECORDS  # noqa: E402
from monitor.demo.datasets import load_adult  # noqa: E402

RF_WALL_GOAL_SECONDS = 60.0
MLP_WALL_GOAL_SECONDS = 120.0
RATIO_GOAL = 10.0
NO_POPULATION_GOAL = 0.9
RF_TPR_GOAL = 0.17
CHALLENGERS = ("base", "lira_bayes", "quantile")
MODELS: dict[str, tuple[str, Callable[[int], Any], tuple[str, ...]]] = {
    "rf": ("RandomForest(100 trees)", lambda seed: RandomForestClassifier(random_state=seed, n_jobs=2),
           (*TIER_1, *CHALLENGERS)),
    "mlp": ("MLP(64) on standardised features",
            lambda seed: make_pipeline(StandardScaler(),
                                       MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)),
            (*TIER_1, "lira_online", *CHALLENGERS)),
}


def rate(r: dict) -> str:
    flag = "" if r["reliable"] else "*"
    return f"{r['value']:6.2%} [{r['low']:6.2%}, {r['high']:6.2%}]{flag}"


def describe(details: dict) -> str:
    shown = {k: v for k, v in details.items()
             if k in ("a", "clip", "temperature", "prior_dof") and isinstance(v, int | float)}
    return " ".join(f"{k}={v:.3g}" for k, v in shown.items())


def audit(data: AuditData, target: Any, attacks: list[str], args: argparse.Namespace) -> tuple[dict, float]:
    started = time.perf_counter()
    result = run_attacks(data=data, target_predict_proba=target.predict_proba, estimator_for_reference=target,
                         config=AuditConfig(attacks=attacks, n_reference=args.reference, seed=args.seed,
                                            what_if_policies=["full", "label"] if args.quick else list(STANDARD_POLICIES),
                                            max_per_side=DEFAULT_EVAL_RECORDS))
    return result.to_dict(), time.perf_counter() - started


def timing_split(out: dict) -> str:
    t = out["timings"]
    parts = {"fit offline refs": t.get("reference_offline", 0.0), "fit online refs": t.get("reference_online", 0.0),
             "query refs": t.get("reference_offline_queries", 0.0) + t.get("reference_online_queries", 0.0),
             "query target": t.get("target_queries", 0.0) + t.get("target_pool_queries", 0.0)
             + t.get("label_only_queries", 0.0),
             "attacks": t.get("attacks", 0.0), "what-if": t.get("what_if", 0.0)}
    return ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if v) + f" (total {t['total']:.1f} s)"


def bench(kind: str, args: argparse.Namespace, data: Any) -> list[str]:
    """Print one model's comparison; returns the goals it misses."""
    name, make, default_attacks = MODELS[kind]
    attacks = args.attacks.split(",") if args.attacks else list(default_attacks)
    n_eval = 2000 if args.quick else 10_000
    order = np.random.default_rng(args.seed).permutation(len(data.y))
    members, rest = order[: len(order) // 2], order[len(order) // 2:]
    nonmembers, population = rest[:n_eval], rest[n_eval:]
    started = time.perf_counter()
    target = make(args.seed).fit(data.X[members], data.y[members])
    fit_seconds = time.perf_counter() - started
    with_population, wall = audit(AuditData(
        members_X=data.X[members], members_y=data.y[members], nonmembers_X=data.X[nonmembers],
        nonmembers_y=data.y[nonmembers], population_X=data.X[population], population_y=data.y[population]),
        target, attacks, args)
    without, without_wall = audit(AuditData(
        members_X=data.X[members], members_y=data.y[members], nonmembers_X=data.X[rest],
        nonmembers_y=data.y[rest]), target, attacks, args)

    cw, cn = with_population["config"], without["config"]
    print(f"== UCI Adult, {name} fit on {len(members)} members in {fit_seconds:.1f} s; "
          f"train acc {with_population['accuracy']['train']:.3f}, test acc {with_population['accuracy']['test']:.3f}")
    print(f"with a population:    {cw['n_members']} members vs {cw['n_nonmembers']} non-members, reference pool "
          f"{cw['n_reference_pool']} ({cw['reference_train_size']} records per model), RMIA z {cw['n_population_z']}")
    print(f"without ({cn['population_source']}): {cn['n_members']} vs {cn['n_nonmembers']}, reference pool "
          f"{cn['n_reference_pool']} ({cn['reference_train_size']} per model), skipped "
          f"{cn['coverage']['skipped'] or 'nothing'}")
    print(f"{'attack':17s} {'AUC':>5s}  {'TPR@1%FPR [95% CI]':26s} {'TPR@0.1%FPR [95% CI]':26s} {'FP':>4s} │ "
          f"{'without: TPR@1%FPR':26s} {'TPR@0.1%FPR':26s} {'FP':>4s}  score s  settled on")
    by_name = {a["name"]: a for a in without["attacks"]}
    for a in with_population["attacks"]:
        b = by_name.get(a["name"])
        w1, w01 = a["tpr_at_fpr"]["0.01"], a["tpr_at_fpr"]["0.001"]
        right = (f"{rate(b['tpr_at_fpr']['0.01']):26s} {rate(b['tpr_at_fpr']['0.001']):26s} "
                 f"{b['tpr_at_fpr']['0.001']['expected_false_positives']:4.0f}") if b else f"{'skipped':58s}"
        print(f"{a['name']:17s} {a['auc']:5.3f}  {rate(w1):26s} {rate(w01):26s} {w01['expected_false_positives']:4.0f} │ "
              f"{right}  {a['seconds']:6.2f}  {describe(a['details'])}")
    print("  (* fewer than 10 expected false positives at that FPR: unreliable; FP = expected false positives at 0.1 %)")
    print("what-if:  " + "; ".join(f"{row['policy']} acc {row['accuracy']:.3f} TPR@1% {row['tpr_at_fpr']['0.01']:.2%}"
                                    f" ({row['tpr_attack']})" for row in with_population["what_if"]))
    print(f"wall time with a population {wall:.1f} s: {timing_split(with_population)}")
    print(f"wall time without:          {without_wall:.1f} s: {timing_split(without)}")

    missed = []
    best, best_without = with_population["headline"]["tpr_at_fpr"]["0.01"], without["headline"]["tpr_at_fpr"]["0.01"]
    print(f"best of every attack run: {best['value']:.2%} ({best['attack']}), without a population "
          f"{best_without['value']:.2%} ({best_without['attack']})")
    # The goals are the product's: the headline a new policy reports, the best of the default tier.
    head, head_without = tier_headline(with_population), tier_headline(without)
    ratio = head_without["value"] / max(head["value"], 1e-12)
    print(f"default-tier headline TPR@1%FPR {head['value']:.2%} ({head['attack']}), without a population "
          f"{head_without['value']:.2%} ({head_without['attack']}): ratio {ratio:.2f} (goal ≥ {NO_POPULATION_GOAL})")
    missed += [f"{kind}: no-population ratio {ratio:.2f}"] if ratio < NO_POPULATION_GOAL else []
    goal_seconds = RF_WALL_GOAL_SECONDS if kind == "rf" else MLP_WALL_GOAL_SECONDS
    print(f"audit wall time {wall:.1f} s (goal ≤ {goal_seconds:.0f} s; the machine is shared, so wall times may be "
          f"inflated)")
    missed += [f"{kind}: audit {wall:.0f} s"] if wall > goal_seconds else []
    if kind == "rf":
        print(f"forest TPR@1%FPR with {args.reference} reference models {head['value']:.2%} "
              f"(goal ≥ {RF_TPR_GOAL:.0%} with 4)")
        missed += [f"rf: TPR@1%FPR {head['value']:.2%}"] if head["value"] < RF_TPR_GOAL else []
    loss = next((a for a in with_population["attacks"] if a["name"] == "loss"), None)
    if loss is not None and loss["tpr_at_fpr"]["0.01"]["value"] > 0:
        best_ratio = head["value"] / loss["tpr_at_fpr"]["0.01"]["value"]
        goal = f"goal ≥ {RATIO_GOAL:.0f}" if kind == "rf" else "no goal: the MLP barely leaks"
        print(f"best ÷ loss TPR@1%FPR: {best_ratio:.1f} ({goal})")
    print()
    return missed


def tier_headline(result: dict) -> dict:
    """TPR@1%FPR of the default tier's best attack (what a new policy's audit reports as its headline)."""
    tier = [a for a in result["attacks"] if a["name"] in TIER_1_NAMES]
    top = max(tier, key=lambda a: a["tpr_at_fpr"]["0.01"]["value"])
    return {"value": top["tpr_at_fpr"]["0.01"]["value"], "attack": top["name"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 evaluation non-members, what-if full/label only")
    parser.add_argument("--model", choices=["rf", "mlp", "both"], default="both")
    parser.add_argument("--attacks", default="", help="comma-separated catalogue names (default: tier 1, the "
                                                       "challengers, and online LiRA for the MLP)")
    parser.add_argument("--reference", type=int, default=4, help="reference models per kind (tier 1: 4)")
    parser.add_argument("--seed", type=int, default=0, help="the members/non-members split, the target's and the "
                                                            "audit's seed (the goals were set on seed 0)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # the MLP stops at max_iter, as the product's would
    data = load_adult()
    missed: list[str] = []
    for kind in (["rf", "mlp"] if args.model == "both" else [args.model]):
        missed += bench(kind, args, data)
    print("goals missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
