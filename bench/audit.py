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

Boosters (`--model xgboost|lightgbm|boosters`): an XGBoost and a LightGBM target that overfit (deep trees, 300
rounds), saved in their own file format and audited the product's way (`monitor.registry.boosters`: the file read,
reference models the same booster class with the file's parameters, XGBoost's rounds and depth inferred from its
trees), against an offline LiRA written here (Carlini et al. 2022), as the issue sets the bar: `--lira-reference`
models of the same library with the target's parameters, each on a random half of the population, a Gaussian fit of
the logit-scaled confidence OUT (per-record means, a global variance, as the paper advises below 64 models).
Mixed types (`--model pipeline`): the credit pipeline over raw UCI Adult rows (imputer, one-hot encoder, forest)
registered and audited through the product (SQLite in a temporary folder: registration reads its schema, the
audit's reference models are clones of the whole pipeline trained on raw rows), against the same offline LiRA on
raw rows. Goal for each: product headline TPR@1%FPR ≥ 0.9 × that LiRA's.

Usage: python bench/audit.py [--quick] [--model rf|mlp|both|xgboost|lightgbm|boosters] [--attacks threshold,rmia,...]
       [--reference N] [--lira-reference N] [--seed N]
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
import pandas as pd  # noqa: E402
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
BOOSTER_RATIO_GOAL = 0.9
BOOSTER_ROWS = 4_000  # members = evaluation non-members = 4,000; the population another 8,000
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


def _xgboost(seed: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=300, max_depth=10, n_jobs=1, random_state=seed)


def _lightgbm(seed: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=300, num_leaves=255, min_child_samples=2, n_jobs=1, random_state=seed,
                          verbose=-1)


BOOSTERS: dict[str, tuple[str, Callable[[int], Any], str]] = {
    "xgboost": ("XGBoost(300 rounds, depth 10)", _xgboost, "model.ubj"),
    "lightgbm": ("LightGBM(300 rounds, 255 leaves, min 2 per leaf)", _lightgbm, "model.txt"),
}


def saved_file(estimator: Any, filename: str) -> bytes:
    """The fitted booster as the team would upload it: the library's own save_model."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        (estimator.booster_ if hasattr(estimator, "booster_") else estimator).save_model(path)
        return path.read_bytes()


def offline_lira(reference_confidences: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Offline LiRA's scoring (Carlini et al. 2022, "Membership Inference Attacks From First Principles", §VI-C),
    written apart from the product: `reference_confidences` (models × records) are the logit-scaled confidences in
    each evaluated record's true label of reference models that never trained on it (each on a random half of the
    population); a target confidence is scored by how far above that record's OUT Gaussian it lies (per-record
    mean, a global variance: the paper's advice below 64 models)."""
    mean_out = reference_confidences.mean(axis=0)
    std_out = float(np.std(reference_confidences - mean_out)) + 1e-6
    return lambda target: (target - mean_out) / std_out


def population_halves(n_population: int, *, n_models: int, seed: int) -> list[np.ndarray]:
    """The rows of the population each reference model trains on: a random half each."""
    rng = np.random.default_rng([seed, 2022])
    return [np.flatnonzero(rng.random(n_population) < 0.5) for _ in range(n_models)]


def logit_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(proba[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def tpr_at_1pct(members: np.ndarray, nonmembers: np.ndarray) -> float:
    threshold = np.quantile(nonmembers, 0.99, method="higher")
    return float(np.mean(members > threshold))


def bench_booster(kind: str, args: argparse.Namespace, data: Any) -> list[str]:
    """The product's audit of a booster file against an independent offline LiRA; returns the goals it misses."""
    from monitor.registry.boosters import load_booster, reference_estimator, sniff_booster

    name, make, filename = BOOSTERS[kind]
    attacks = args.attacks.split(",") if args.attacks else list(TIER_1)
    order = np.random.default_rng(args.seed).permutation(len(data.y))
    members, nonmembers = order[:BOOSTER_ROWS], order[BOOSTER_ROWS:2 * BOOSTER_ROWS]
    population = order[2 * BOOSTER_ROWS:4 * BOOSTER_ROWS]
    target = make(args.seed).fit(data.X[members], data.y[members])
    raw = saved_file(target, filename)
    predictor = load_booster(raw, sniff_booster(raw) or "")
    estimator, inferred = reference_estimator(predictor)
    started = time.perf_counter()
    result = run_attacks(data=AuditData(
        members_X=data.X[members], members_y=data.y[members], nonmembers_X=data.X[nonmembers],
        nonmembers_y=data.y[nonmembers], population_X=data.X[population], population_y=data.y[population]),
        target_predict_proba=predictor.predict_proba, estimator_for_reference=estimator,
        config=AuditConfig(attacks=attacks, n_reference=args.reference, seed=args.seed,
                           what_if_policies=["full"], max_per_side=DEFAULT_EVAL_RECORDS)).to_dict()
    product_seconds = time.perf_counter() - started
    head = tier_headline(result) if not args.attacks else max(
        ({"value": a["tpr_at_fpr"]["0.01"]["value"], "attack": a["name"]} for a in result["attacks"]),
        key=lambda h: h["value"])

    started = time.perf_counter()
    evaluated = np.concatenate([members, nonmembers])
    X, y = data.X[evaluated], data.y[evaluated]
    confidences = np.stack([
        logit_confidence(make(args.seed + 1 + k).fit(data.X[population[half]], data.y[population[half]])
                         .predict_proba(X), y)
        for k, half in enumerate(population_halves(len(population), n_models=args.lira_reference, seed=args.seed))])
    scores = offline_lira(confidences)(logit_confidence(predictor.predict_proba(X), y))
    lira = tpr_at_1pct(scores[:len(members)], scores[len(members):])
    lira_seconds = time.perf_counter() - started
    ratio = head["value"] / max(lira, 1e-12)
    print(f"== UCI Adult, {name} on {len(members)} members, saved as {filename} "
          f"({len(raw):,} bytes); train acc {result['accuracy']['train']:.3f}, test acc {result['accuracy']['test']:.3f}")
    print(f"reference parameters inferred: {', '.join(inferred) or 'none (all read from the file)'}")
    print(f"product audit ({args.attacks or 'tier 1'}, {args.reference} reference models per kind): headline TPR@1%FPR "
          f"{head['value']:.2%} ({head['attack']}), AUC {result['headline']['auc']:.3f}, wall {product_seconds:.1f} s")
    print("  each attack: " + ", ".join(f"{a['name']} {a['tpr_at_fpr']['0.01']['value']:.2%}" for a in result["attacks"]))
    print(f"independent offline LiRA ({args.lira_reference} models on population halves, {len(members)} vs "
          f"{len(nonmembers)}): "
          f"TPR@1%FPR {lira:.2%}, wall {lira_seconds:.1f} s")
    print(f"ratio product / LiRA {ratio:.2f} (goal ≥ {BOOSTER_RATIO_GOAL})")
    print()
    return [f"{kind}: product / LiRA {ratio:.2f}"] if ratio < BOOSTER_RATIO_GOAL else []


def bench_pipeline(args: argparse.Namespace) -> list[str]:
    """The credit pipeline over raw rows, registered and audited through the product, against an independent
    offline LiRA of the same pipeline retrained on population halves; returns the goals it misses."""
    import tempfile

    os.environ["MONITOR_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-audit-")
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import skops.io as sio
    from django.core.management import call_command

    from audits import runner
    from audits.scheduling import request_audit
    from monitor.demo.datasets import credit_pipeline, load_adult_raw
    from monitor.registry.registration import Upload, register_model

    call_command("migrate", verbosity=0)
    frame = load_adult_raw()
    order = np.random.default_rng(args.seed).permutation(len(frame))
    members, nonmembers = frame.iloc[order[:BOOSTER_ROWS]], frame.iloc[order[BOOSTER_ROWS:2 * BOOSTER_ROWS]]
    population = frame.iloc[order[2 * BOOSTER_ROWS:4 * BOOSTER_ROWS]]
    target = credit_pipeline(seed=args.seed).fit(members.drop(columns="income"), members["income"])

    def csv(part: Any) -> Upload:
        return Upload(part.to_csv(index=False).encode(), "part.csv")

    model = register_model(slug="bench-pipeline", name="Bench pipeline", label_column="income",
                           artifact=Upload(sio.dumps(target), "credit.skops"), members=csv(members),
                           nonmembers=csv(nonmembers), population=csv(population))
    started = time.perf_counter()
    run = runner.execute(request_audit(model, enqueue=False).pk)
    product_seconds = time.perf_counter() - started
    if run.status != "done":
        raise SystemExit(f"the pipeline's audit failed: {run.error}")
    result = run.result
    head = tier_headline(result)

    started = time.perf_counter()
    evaluated = pd.concat([members, nonmembers])
    labels = sorted(frame["income"].unique())
    y = evaluated["income"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    X = evaluated.drop(columns="income")
    confidences = np.stack([
        logit_confidence(credit_pipeline(seed=args.seed + 1 + k).fit(
            population.iloc[half].drop(columns="income"), population.iloc[half]["income"]).predict_proba(X), y)
        for k, half in enumerate(population_halves(len(population), n_models=args.lira_reference, seed=args.seed))])
    scores = offline_lira(confidences)(logit_confidence(target.predict_proba(X), y))
    lira = tpr_at_1pct(scores[:len(members)], scores[len(members):])
    lira_seconds = time.perf_counter() - started
    ratio = head["value"] / max(lira, 1e-12)
    features = model.schema
    print(f"== UCI Adult raw rows ({len(features.categorical)} category columns, missing cells), credit pipeline "
          f"(imputer, one-hot encoder, 100-tree forest) on {len(members)} members; train acc "
          f"{result['accuracy']['train']:.3f}, test acc {result['accuracy']['test']:.3f}")
    print(f"product audit (tier 1, {run.config['n_reference']} reference pipelines per kind, trained on raw rows): "
          f"headline TPR@1%FPR {head['value']:.2%} ({head['attack']}), AUC {result['headline']['auc']:.3f}, "
          f"wall {product_seconds:.1f} s")
    print("  each attack: " + ", ".join(f"{a['name']} {a['tpr_at_fpr']['0.01']['value']:.2%}" for a in result["attacks"]))
    print(f"independent offline LiRA ({args.lira_reference} pipelines on population halves, {len(members)} vs "
          f"{len(nonmembers)}): TPR@1%FPR {lira:.2%}, wall {lira_seconds:.1f} s")
    print(f"ratio product / LiRA {ratio:.2f} (goal ≥ {BOOSTER_RATIO_GOAL})")
    print()
    return [f"pipeline: product / LiRA {ratio:.2f}"] if ratio < BOOSTER_RATIO_GOAL else []


def tier_headline(result: dict) -> dict:
    """TPR@1%FPR of the default tier's best attack (what a new policy's audit reports as its headline)."""
    tier = [a for a in result["attacks"] if a["name"] in TIER_1_NAMES]
    top = max(tier, key=lambda a: a["tpr_at_fpr"]["0.01"]["value"])
    return {"value": top["tpr_at_fpr"]["0.01"]["value"], "attack": top["name"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 evaluation non-members, what-if full/label only")
    parser.add_argument("--model", choices=["rf", "mlp", "both", "xgboost", "lightgbm", "boosters", "pipeline",
                                            "real-models"], default="both")
    parser.add_argument("--lira-reference", type=int, default=16, help="the independent offline LiRA of the boosters "
                                                                      "and the pipeline: reference models (16-32)")
    parser.add_argument("--attacks", default="", help="comma-separated catalogue names (default: tier 1, the "
                                                       "challengers, and online LiRA for the MLP)")
    parser.add_argument("--reference", type=int, default=4, help="reference models per kind (tier 1: 4)")
    parser.add_argument("--seed", type=int, default=0, help="the members/non-members split, the target's and the "
                                                            "audit's seed (the goals were set on seed 0)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # the MLP stops at max_iter, as the product's would
    data = load_adult()
    missed: list[str] = []
    kinds = {"both": ["rf", "mlp"], "boosters": ["xgboost", "lightgbm"],
             "real-models": ["pipeline", "xgboost", "lightgbm"]}.get(args.model, [args.model])
    for kind in kinds:
        if kind == "pipeline":
            missed += bench_pipeline(args)
        else:
            missed += bench_booster(kind, args, data) if kind in BOOSTERS else bench(kind, args, data)
    print("goals missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
