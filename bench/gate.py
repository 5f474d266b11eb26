"""The privacy gate on UCI Adult (issue 28): how often it fails a candidate that is production up to its seed, how
often it fails a clearly leakier one, and what one gate costs, anchored on one plain audit of production in the
same run (gate seconds ÷ audit seconds).

Split as bench/audit.py: members = a seed-0 half of Adult; 10,000 non-members (2,000 with --quick); the rest is the
population. Production is the demo's forest (100 trees, leaf size 1, random_state 0); the audits run the default
policy (AuditPolicy's attacks, reference models, seed and evaluation size), as audits.gate.run_gate does: both
models on the same records, the candidate reusing production's reference models when its estimator is production's
up to the seed.

- wall time: one full gate (production audit with its reference models trained, candidate audit, comparison) and
  the anchor, one plain audit of production as the runner makes it (what-if table included). Goal ≤ 300 s.
- false failures: `--candidates` pairs of forests identical but for random_state (production i, candidate 1000 + i;
  pair 0's production is the demo forest, its gate the one timed), each candidate gated against its production;
  the share the comparison fails, with its 95 % Clopper–Pearson interval. Goal ≤ α. Production is drawn anew
  for each pair because one forest's headline is itself a draw (at 2,000 non-members random_state 0 read 27.6 %
  TPR@1%FPR and random_states 1–3 22–24 %): against one lucky production every candidate passes, against an
  unlucky one more fail than α, and the false-failure rate is the average over both.
- power: production of leaf size 20 against a candidate of leaf size 1, over `--power-seeds` pairs of seeds (the
  split and the reference models fixed); the share failed. Reported.

The verdicts are the comparison's (`decide` without the policy's absolute limits): the demo forest reads about 20 %
TPR@1%FPR, past the default policy's 2 % limit, so run_gate would fail every candidate on that limit alone,
production included. How many of the forests break it is printed beside.

Usage: python bench/gate.py [--quick] [--candidates N] [--power-seeds N] [--bootstrap N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

from audits.attacks import STANDARD_POLICIES, AuditConfig, AuditData, AuditResult, run_attacks  # noqa: E402
from audits.attacks.gate import GateResult, GateVerdict, compare, decide, model_scores  # noqa: E402
from audits.attacks.metrics import clopper_pearson  # noqa: E402
from audits.attacks.verdict import PolicyLimits, judge  # noqa: E402
from monitor.demo.datasets import load_adult  # noqa: E402

GATE_GOAL_SECONDS = 300.0


def default_policy() -> dict[str, Any]:
    """AuditPolicy's defaults (an unsaved row: Django set up on a throwaway data folder, no database touched)."""
    os.environ.setdefault("MONITOR_DATA_DIR", tempfile.mkdtemp(prefix="bench-gate-"))
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from audits.models import AuditPolicy

    return AuditPolicy().config()


def forest(*, leaf: int, seed: int) -> RandomForestClassifier:
    """The demo's forest (monitor/demo/seed.py) with its leaf size and seed set."""
    return RandomForestClassifier(n_estimators=100, min_samples_leaf=leaf, random_state=seed, n_jobs=2)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.policy = default_policy()
        data = load_adult()
        order = np.random.default_rng(0).permutation(len(data.y))
        members, rest = order[: len(order) // 2], order[len(order) // 2:]
        n_eval = 2_000 if args.quick else 10_000
        nonmembers, population = rest[:n_eval], rest[n_eval:]
        self.members_X, self.members_y = data.X[members], data.y[members]
        self.split = AuditData(members_X=self.members_X, members_y=self.members_y, nonmembers_X=data.X[nonmembers],
                               nonmembers_y=data.y[nonmembers], population_X=data.X[population],
                               population_y=data.y[population])
        self.limits = PolicyLimits.from_dict(self.policy["limits"])
        self.alpha = float(self.policy["gate_alpha"])

    def config(self, *, what_if: bool) -> AuditConfig:
        policy = self.policy
        return AuditConfig(attacks=list(policy["attacks"]), n_reference=policy["n_reference"], seed=policy["seed"],
                           what_if_policies=STANDARD_POLICIES if what_if and policy["what_if"] else (),
                           max_per_side=policy["max_eval_records"])

    def fit(self, *, leaf: int, seed: int) -> RandomForestClassifier:
        return forest(leaf=leaf, seed=seed).fit(self.members_X, self.members_y)

    def audit(self, model: RandomForestClassifier, *, references: Any = None, what_if: bool = False) -> AuditResult:
        return run_attacks(data=self.split, target_predict_proba=model.predict_proba, estimator_for_reference=model,
                           config=self.config(what_if=what_if), references=references)

    def decide(self, production: AuditResult, candidate: AuditResult, *, seed: int) -> GateResult:
        """The gate's comparison as run_gate makes it, the policy's absolute limits left out (see the docstring)."""
        comparisons = compare(model_scores(production), model_scores(candidate), alpha=self.alpha,
                              n_bootstrap=self.args.bootstrap, seed=seed)
        weak = [*judge(candidate, limits=self.limits).weak_audit, *judge(production, limits=self.limits).weak_audit]
        return decide(comparisons, alpha=self.alpha, n_bootstrap=self.args.bootstrap, weak=sorted(set(weak)))

    def breaks_limit(self, result: AuditResult) -> bool:
        return bool(judge(result, limits=self.limits).breaches)


def line(label: str, result: GateResult) -> str:
    parts = [f"{c.fpr:.1%}: {c.production:6.2%} → {c.candidate:6.2%} ({c.difference:+.2%}, lower {c.lower:+.2%}, "
             f"p {c.p_value:.2f})" for c in result.comparisons]
    return f"  {label:28s} {str(result.verdict):9s} " + "; ".join(parts)


def share(failures: int, trials: int) -> str:
    low, high = clopper_pearson(failures, trials)
    return f"{failures}/{trials} = {failures / trials:.1%} [95% CI {float(low):.1%}, {float(high):.1%}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 evaluation non-members, 5 candidates, 2 power "
                                                             "seeds, 200 bootstrap resamples")
    parser.add_argument("--candidates", type=int, default=None, help="pairs of forests identical up to the seed "
                                                                          "(20)")
    parser.add_argument("--power-seeds", type=int, default=None, help="leaf 20 vs leaf 1 pairs (5)")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples per comparison (1000)")
    args = parser.parse_args()
    args.candidates = args.candidates or (5 if args.quick else 20)
    args.power_seeds = args.power_seeds or (2 if args.quick else 5)
    args.bootstrap = args.bootstrap or (200 if args.quick else 1000)
    bench = Bench(args)
    policy = bench.policy
    started = time.perf_counter()

    production = bench.fit(leaf=1, seed=0)
    t = time.perf_counter()
    bench.audit(production, what_if=True)
    audit_seconds = time.perf_counter() - t

    # One full gate, as run_gate does it: production audited (its reference models trained), the candidate audited
    # with production's reference models, the comparison. The candidate is fitted beforehand: it arrives as a file.
    first = bench.fit(leaf=1, seed=1000)
    t = time.perf_counter()
    production_result = bench.audit(production)
    production_seconds = time.perf_counter() - t
    t = time.perf_counter()
    candidate_result = bench.audit(first, references=production_result.references)
    candidate_seconds = time.perf_counter() - t
    t = time.perf_counter()
    gate = bench.decide(production_result, candidate_result, seed=policy["seed"])
    decide_seconds = time.perf_counter() - t
    gate_seconds = production_seconds + candidate_seconds + decide_seconds
    config = production_result.config
    print(f"== UCI Adult, demo forest (100 trees, leaf 1) on {len(bench.members_y)} members; {config['n_members']} "
          f"members vs {config['n_nonmembers']} non-members evaluated; attacks {', '.join(policy['attacks'])}, "
          f"{policy['n_reference']} reference models, α = {bench.alpha}, {args.bootstrap} bootstrap resamples")
    head = production_result.headline.tpr_at_fpr[0.01] if production_result.headline else None
    if head is not None:
        own = production_result.attack(head.attack).metrics.tpr_at_fpr[0.01]
        print(f"production headline TPR@1%FPR {head.value:.2%} [{head.low:.2%}, {head.high:.2%}] ({head.attack}; "
              f"interval simultaneous over {head.n_compared} attacks; the attack's own "
              f"[{own.low:.2%}, {own.high:.2%}])")
    print(f"one full gate {gate_seconds:.1f} s (production audit {production_seconds:.1f} s, candidate audit "
          f"{candidate_seconds:.1f} s with production's reference models, comparison {decide_seconds:.1f} s); one "
          f"plain audit {audit_seconds:.1f} s; ratio gate / audit {gate_seconds / audit_seconds:.2f} "
          f"(goal: gate ≤ {GATE_GOAL_SECONDS:.0f} s)")

    print(f"-- {args.candidates} candidates identical to their production up to random_state (leaf 1 both)")
    print(line("random_state 0 / 1000", gate))
    verdicts = [gate.verdict]
    breaking = [bench.breaks_limit(production_result), bench.breaks_limit(candidate_result)]
    references = production_result.references  # leaf-1 forests up to the seed: one set serves them all
    for pair in range(1, args.candidates):
        production_i = bench.audit(bench.fit(leaf=1, seed=pair), references=references)
        candidate_i = bench.audit(bench.fit(leaf=1, seed=1000 + pair), references=references)
        result = bench.decide(production_i, candidate_i, seed=pair)
        verdicts.append(result.verdict)
        breaking += [bench.breaks_limit(production_i), bench.breaks_limit(candidate_i)]
        print(line(f"random_state {pair} / {1000 + pair}", result), flush=True)
    failures = sum(v == GateVerdict.FAIL for v in verdicts)
    warnings = sum(v == GateVerdict.WARN for v in verdicts)
    print(f"false-failure rate {share(failures, len(verdicts))} (goal ≤ α = {bench.alpha}); warned {warnings}, "
          f"undecided {sum(v == GateVerdict.UNDECIDED for v in verdicts)}; forests breaking the policy's absolute "
          f"TPR@1%FPR limit ({bench.limits.tpr_at_1pct_fpr:.0%}): {sum(breaking)}/{len(breaking)}")

    print(f"-- power: production leaf 20 vs candidate leaf 1, {args.power_seeds} seed pairs")
    regularised_references = None
    power_failures = 0
    for seed in range(args.power_seeds):
        regularised = bench.audit(bench.fit(leaf=20, seed=seed), references=regularised_references)
        regularised_references = regularised.references  # leaf-20 reference models: trained once, seeds aside
        leaky = bench.audit(bench.fit(leaf=1, seed=2000 + seed), references=references)
        result = bench.decide(regularised, leaky, seed=seed)
        power_failures += result.verdict == GateVerdict.FAIL
        print(line(f"random_state {seed} / {2000 + seed}", result), flush=True)
    print(f"power (leaf 1 failed against leaf 20) {share(power_failures, args.power_seeds)}")
    missed = [f"gate {gate_seconds:.0f} s"] if gate_seconds > GATE_GOAL_SECONDS else []
    missed += [f"false failures {failures}/{len(verdicts)}"] if failures / len(verdicts) > bench.alpha else []
    print(f"bench wall time {time.perf_counter() - started:.0f} s; goals missed: {'; '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
