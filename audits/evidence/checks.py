"""The evidence checks: a fixed vocabulary of questions the bundle's own facts answer (audit.json and
candidates.json, as written), each with a status and one sentence naming the evidence that decides it: which audit
and figure, which policy limit, which detector rate over how many client-days, which restriction, which gate
result. The framework mapping files (audits/evidence/controls/) name these checks; audits.evidence.annex applies them.

Pure (the standard library and audits.evidence.format, as the verifier): an auditor can recompute a bundle's annex
from its own files without Django.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from audits.evidence.format import ControlStatus

MET, NOT_MET = ControlStatus.MET, ControlStatus.NOT_MET
NOT_MEASURED, NOT_APPLICABLE = ControlStatus.NOT_MEASURED, ControlStatus.NOT_APPLICABLE

# Words audit.json stores, defined once elsewhere (tests/audits/test_controls_annex.py holds them to their sources):
RUN_DONE = "done"  # audits.models.RunStatus.DONE
INCONCLUSIVE = "inconclusive"  # audits.attacks.verdict.VerdictState.INCONCLUSIVE
TPR_METRIC, EPSILON_METRIC = "tpr_at_1pct_fpr", "epsilon_lower"  # audits.attacks.verdict.LimitedMetric
HEADLINE_FPR = "0.01"  # audits.models.HEADLINE_FPR
DETECTOR_SOURCE = "detector"  # monitor.models.vocabulary.AlertSource.DETECTOR
# An alert's query count, and evidence that says who, which queries and how sure but nothing about the inputs.
VOLUME_KEYS = ("n_queries", "queries")
NOT_INPUT_STATISTICS = frozenset({*VOLUME_KEYS, "query_ids", "member_ids", "most_exposed_member_ids", "false_alarm_rate",
                                  "false_alarm_unit", "score", "signals", "accounts", "n_accounts", "linked_clients",
                                  "n_linked_clients", "strongest_link"})


@dataclass(frozen=True)
class CheckResult:
    status: ControlStatus
    evidence: str

    def to_dict(self, name: str) -> dict[str, str]:
        return {"name": name, "status": str(self.status), "evidence": self.evidence}


@dataclass(frozen=True)
class Facts:
    """What the checks read: audit.json's sections and candidates.json's candidates, as the bundle holds them."""

    model: Mapping[str, Any]
    runs: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    detection: Mapping[str, Any] = field(default_factory=dict)
    gateway: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    deployments: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)

    @classmethod
    def from_bundle(cls, document: Mapping[str, Any], candidates: Mapping[str, Any]) -> Facts:
        return cls(model=document["model"], runs=list(document.get("runs") or []),
                   alerts=list(document.get("alerts") or []), detection=document.get("detection") or {},
                   gateway=document.get("gateway") or {}, training=document.get("training") or {},
                   deployments=list(document.get("deployments") or []),
                   candidates=list(candidates.get("candidates") or []))

    @property
    def slug(self) -> str:
        return str(self.model.get("slug"))

    @property
    def main_run(self) -> dict | None:
        """The run the bundle is about: the latest finished one (the report's detail shows the same)."""
        finished = [run for run in self.runs if run.get("status") == RUN_DONE]
        return finished[-1] if finished else None


Check = Callable[[Facts], CheckResult]
_CHECKS: dict[str, Check] = {}


def evidence_check(name: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        if name in _CHECKS:
            raise ValueError(f"an evidence check named {name!r} is already registered")
        _CHECKS[name] = check
        return check
    return register


def check_names() -> tuple[str, ...]:
    return tuple(sorted(_CHECKS))


def run_check(name: str, facts: Facts) -> CheckResult:
    return _CHECKS[name](facts)


# --- how figures read ------------------------------------------------------------------------------------

def pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value * 100:.2f} %"


def day(value: Any) -> str:
    return str(value)[:10] if value else "–"


def short(sha256: Any) -> str:
    return f"{str(sha256)[:16]}…" if sha256 else "–"


def _no_audit(facts: Facts) -> CheckResult:
    failed = [f"audit {run['id']} {run.get('status')}" + (f" ({run['error']})" if run.get("error") else "")
              for run in facts.runs if run.get("status") != RUN_DONE]
    return CheckResult(NOT_MEASURED, f"No audit of {facts.slug} finished in this bundle's scope"
                                     + (f": {'; '.join(failed)}" if failed else "") + ".")


def _limit(run: Mapping[str, Any], metric: str) -> Any:
    return ((run.get("config") or {}).get("limits") or {}).get(metric)


def _breach(run: Mapping[str, Any], metric: str) -> dict | None:
    return next((b for b in (run.get("policy") or {}).get("breaches") or [] if b.get("metric") == metric), None)


def _weak(run: Mapping[str, Any]) -> list[str]:
    verdict = run.get("policy") or {}
    reasons = list(verdict.get("weak_audit") or [])
    return reasons or (["its verdict is inconclusive"] if verdict.get("verdict") == INCONCLUSIVE else [])


def _evaluated(run: Mapping[str, Any]) -> str:
    attacks = run.get("attacks") or []
    return (f" on {attacks[0].get('n_members')} members and {attacks[0].get('n_nonmembers')} non-members"
            if attacks else "")


# --- audits -----------------------------------------------------------------------------------------------

@evidence_check("audit.run_state_of_the_art_attacks")
def run_state_of_the_art_attacks(facts: Facts) -> CheckResult:
    """The latest finished audit ran attacks with reference models (LiRA, Carlini et al. 2022; RMIA, Zarifzadeh et
    al. 2024) at full strength: the attacks the verdict's weak-audit rule calls the strongest."""
    run = facts.main_run
    if run is None:
        return _no_audit(facts)
    strong = list(run.get("reference_attacks") or [])
    ran = [attack["name"] for attack in run.get("attacks") or []]
    weak = _weak(run)
    if weak:
        return CheckResult(NOT_MET, f"Audit {run['id']} was a weak audit: {weak[0]}.")
    if not strong:
        return CheckResult(NOT_MET, f"Audit {run['id']} ran {', '.join(ran) or 'no attack'} only: no attack with "
                                    "reference models (LiRA, RMIA), which state-of-the-art membership inference needs.")
    n_reference = (run.get("config") or {}).get("n_reference")
    return CheckResult(MET, f"Audit {run['id']} ({day(run.get('finished_at'))}) ran the reference-model attacks "
                            f"{', '.join(strong)} with {n_reference} reference models among {len(ran)} attacks"
                            f"{_evaluated(run)}.")


@evidence_check("audit.within_tpr_limit")
def within_tpr_limit(facts: Facts) -> CheckResult:
    """The latest finished audit's headline TPR at 1 % FPR against the policy limit it was judged by."""
    run = facts.main_run
    if run is None:
        return _no_audit(facts)
    rate = ((run.get("headline") or {}).get("tpr_at_fpr") or {}).get(HEADLINE_FPR) or {}
    limit = _limit(run, TPR_METRIC)
    if not isinstance(rate.get("value"), (int, float)):
        return CheckResult(NOT_MEASURED, f"Audit {run['id']} has no TPR at 1 % FPR.")
    figure = (f"Audit {run['id']}: TPR at 1 % FPR {pct(rate['value'])} (95 % interval {pct(rate.get('low'))} to "
              f"{pct(rate.get('high'))}, {rate.get('attack')})")
    if _breach(run, TPR_METRIC) is not None:
        return CheckResult(NOT_MET, f"{figure} exceeds the policy limit of {pct(limit)}.")
    weak = _weak(run)
    if weak:
        return CheckResult(NOT_MEASURED, f"{figure} against a limit of {pct(limit)}, but the audit was weak and may "
                                         f"under-report: {weak[0]}.")
    if not isinstance(limit, (int, float)):
        return CheckResult(NOT_MEASURED, f"{figure}; the policy set no limit on it.")
    chance = (" (above the limit as a point estimate, but not beyond chance at its number of non-members: the "
              "policy's rule for a breach)") if rate["value"] > limit else ""
    return CheckResult(MET, f"{figure}, within the policy limit of {pct(limit)}{chance}.")


@evidence_check("audit.within_epsilon_limit")
def within_epsilon_limit(facts: Facts) -> CheckResult:
    """The latest finished audit's empirical ε lower bound (from the attacks, not a DP guarantee) against the limit."""
    run = facts.main_run
    if run is None:
        return _no_audit(facts)
    headline = run.get("headline") or {}
    epsilon, limit = headline.get("epsilon_lower"), _limit(run, EPSILON_METRIC)
    if not isinstance(epsilon, (int, float)):
        return CheckResult(NOT_MEASURED, f"Audit {run['id']} has no empirical ε lower bound.")
    figure = f"Audit {run['id']}: empirical ε lower bound {epsilon:.2f} ({headline.get('epsilon_attack')})"
    if not isinstance(limit, (int, float)):
        return CheckResult(NOT_MEASURED, f"{figure}; the policy set no limit on it.")
    if _breach(run, EPSILON_METRIC) is not None:
        return CheckResult(NOT_MET, f"{figure} exceeds the policy limit of {limit:g}.")
    weak = _weak(run)
    if weak:
        return CheckResult(NOT_MEASURED, f"{figure} against a limit of {limit:g}, but the audit was weak and may "
                                         f"under-report: {weak[0]}.")
    return CheckResult(MET, f"{figure}, within the policy limit of {limit:g}.")


@evidence_check("audit.output_policy_measured")
def output_policy_measured(facts: Facts) -> CheckResult:
    """The latest finished audit attacked the outputs under the other output policies too (its what-if table)."""
    run = facts.main_run
    if run is None:
        return _no_audit(facts)
    rows = run.get("what_if") or []
    serving = (run.get("config") or {}).get("output_policy") or facts.model.get("output_policy")
    if not rows:
        return CheckResult(NOT_MET, f"Audit {run['id']} attacked only the outputs as served ({serving}): the policy's "
                                    "what-if over other output policies was off.")
    figures = ", ".join(f"{row.get('policy')} {pct((row.get('tpr_at_fpr') or {}).get(HEADLINE_FPR))}" for row in rows)
    drops = [row["accuracy_drop"] for row in rows if isinstance(row.get("accuracy_drop"), (int, float))]
    cost = f", at an accuracy cost of at most {pct(max(drops))}" if drops else ""
    return CheckResult(MET, f"Audit {run['id']} attacked the outputs under {len(rows)} output policies (TPR at 1 % FPR: "
                            f"{figures}){cost}; the audited model served {serving}.")


# --- the gateway ------------------------------------------------------------------------------------------

@evidence_check("gateway.outputs_reduced")
def outputs_reduced(facts: Facts) -> CheckResult:
    """The predict gateway returns less than full class probabilities (rounded, noised or labels only)."""
    policy = facts.gateway.get("output_policy")
    if policy is None:
        return CheckResult(NOT_MEASURED, f"The bundle does not record {facts.slug}'s output policy.")
    if facts.gateway.get("outputs_reduced"):
        return CheckResult(MET, f"The predict gateway answers {facts.slug}'s callers with {policy} outputs, not full "
                                "class probabilities.")
    return CheckResult(NOT_MET, f"The predict gateway answers {facts.slug}'s callers with full class probabilities "
                                f"(output policy {policy}).")


@evidence_check("gateway.per_client_throttle")
def per_client_throttle(facts: Facts) -> CheckResult:
    """Each client is limited on its own: the model's automatic restriction throttles or blocks a client its
    detector alert names; the restrictions in force in the period are listed."""
    auto = facts.gateway.get("auto_restrict") or {}
    restrictions = facts.gateway.get("restrictions") or []
    by_action = Counter(str(r.get("action")) for r in restrictions)
    in_period = (f"{len(restrictions)} client restriction(s) were in force in the period "
                 f"({', '.join(f'{n} {action}' for action, n in sorted(by_action.items()))})"
                 if restrictions else "no client was restricted in the period")
    action = auto.get("action")
    if action and auto.get("limits_rate"):
        rate = (f" ({facts.gateway.get('throttle_queries_per_minute')} queries a minute)"
                if auto.get("throttle") else "")
        return CheckResult(MET, f"A detector alert at {auto.get('severity')} or above about a client of {facts.slug} "
                                f"puts that client under '{action}'{rate} for {auto.get('hours')} h by itself; "
                                f"{in_period}.")
    if action:
        return CheckResult(NOT_MET, f"{facts.slug}'s automatic restriction '{action}' reduces a flagged client's outputs "
                                    f"but does not limit its rate; {in_period}.")
    return CheckResult(NOT_MET, f"{facts.slug} restricts no client by itself (no automatic restriction); {in_period}.")


# --- training ---------------------------------------------------------------------------------------------

def _dp_candidates(facts: Facts) -> Iterator[tuple[int, dict]]:
    for run in facts.runs:
        for candidate in ((run.get("remediation") or {}).get("candidates") or []):
            if candidate.get("kind") == "dp" and not candidate.get("error"):
                yield run["id"], candidate


@evidence_check("training.dp_epsilon_documented")
def dp_epsilon_documented(facts: Facts) -> CheckResult:
    """The deployed artifact is a differentially private one whose ε is on record (a DP candidate a remediation run
    trained and stored). Anything else reads "not measured": nothing in the product records how an uploaded
    artifact was trained, so "not met" would claim knowledge it does not have, and "met" needs the ε on record."""
    deployed = facts.training.get("deployed_artifact") or {}
    if not deployed:
        return CheckResult(NOT_MEASURED, f"{facts.slug} has no stored artifact (a remote endpoint): how it was trained "
                                         "is not recorded.")
    which = f"the deployed artifact (version {deployed.get('version')}, SHA-256 {short(deployed.get('sha256'))})"
    for artifact in facts.training.get("dp_artifacts") or []:
        if artifact.get("sha256") == deployed.get("sha256"):
            return CheckResult(MET, f"{which[0].upper()}{which[1:]} is the differentially private candidate audit "
                                    f"{artifact.get('run')} trained ({artifact.get('training')}, ε = "
                                    f"{artifact.get('epsilon')}), as its stored provenance records.")
    measured = [f"audit {run_id}: {c['setting'].get('training')} at ε = {c['setting'].get('epsilon')}, TPR at 1 % FPR "
                f"{pct((c.get('tpr_at_1pct_fpr') or {}).get('value'))}" for run_id, c in _dp_candidates(facts)]
    if measured:
        return CheckResult(NOT_MEASURED, f"Differentially private candidates were trained and attacked "
                                         f"({'; '.join(measured)}), but {which} is none of them and nothing records "
                                         "how it was trained: its ε is not documented.")
    return CheckResult(NOT_MEASURED, f"No differentially private training of {facts.slug} is recorded: {which} carries "
                                     "no ε, and no audit in this bundle trained a DP candidate.")


# --- detection --------------------------------------------------------------------------------------------

def _numbers(evidence: Any) -> tuple[Any, list[str]]:
    """(the query count, the names of the input statistics) of an alert's evidence and its signals'."""
    sources = [evidence] + [s.get("evidence") or {} for s in ((evidence or {}).get("signals") or {}).values()
                            if isinstance(s, dict)]
    volume: Any = None
    statistics: set[str] = set()
    for source in sources:
        if not isinstance(source, dict):
            continue
        counts = [source[key] for key in VOLUME_KEYS if isinstance(source.get(key), int)]
        if volume is None and counts:
            volume = counts[0]
        statistics |= {key for key, value in source.items() if key not in NOT_INPUT_STATISTICS
                       and isinstance(value, (int, float)) and not isinstance(value, bool)}
    if volume is None and isinstance((evidence or {}).get("query_ids"), list) and evidence["query_ids"]:
        volume = f"{len(evidence['query_ids'])} cited"
    return volume, sorted(statistics)


@evidence_check("detection.alerts_carry_principal_volume_inputs")
def alerts_carry_principal_volume_inputs(facts: Facts) -> CheckResult:
    """Every detector alert of the period names its client, that client's query count and statistics of its inputs."""
    alerts = [alert for alert in facts.alerts if alert.get("source") == DETECTOR_SOURCE]
    if not alerts:
        return CheckResult(NOT_MEASURED, f"No detector alert on {facts.slug} in the period shows what alerts carry.")
    lacking, example = [], ""
    for alert in alerts:
        volume, statistics = _numbers(alert.get("evidence"))
        missing = [what for what, present in (("client", alert.get("client")), ("query volume", volume is not None),
                                              ("input statistics", statistics)) if not present]
        if missing:
            lacking.append(f"alert {alert['id']} lacks {' and '.join(missing)}")
        elif not example:
            example = (f"alert {alert['id']}: client {alert['client']}, {volume} queries, "
                       f"{', '.join(statistics[:4])}")
    if lacking:
        return CheckResult(NOT_MET, f"Of {len(alerts)} detector alert(s) in the period, {'; '.join(lacking)}.")
    return CheckResult(MET, f"Every detector alert in the period ({len(alerts)}) names the client, its query volume and "
                            f"statistics of its inputs ({example}).")


@evidence_check("detection.false_alarm_rate_measured")
def false_alarm_rate_measured(facts: Facts) -> CheckResult:
    """The detectors' false-alarm rate per benign client-day, as calibrated on the model's own traffic, and the
    window's client-days against those the budget needs; the incidents per client-day the period saw beside it."""
    detection = facts.detection
    window = detection.get("window") or {}
    client_days = window.get("client_days")
    if not detection.get("calibrated_at") or not isinstance(client_days, (int, float)):
        return CheckResult(NOT_MEASURED, f"The detectors of {facts.slug} have not been calibrated: no false-alarm rate "
                                         "is measured.")
    budget, detectors = detection.get("false_alarm_budget"), detection.get("detectors") or {}
    share = f"{budget / len(detectors):.2g} per detector, {len(detectors)} detectors" if detectors and budget else ""
    measured = (f"The detectors of {facts.slug} were calibrated on {day(detection['calibrated_at'])} on "
                f"{client_days:,.1f} client-days of its own traffic (queries #{window.get('from_id')} to "
                f"#{window.get('to_id')}, {window.get('clients')} clients, {window.get('trimmed_clients', 0)} left out "
                f"as suspect) at a false-alarm rate of {budget:g} incidents per benign client-day ({share})")
    period = detection.get("period") or {}
    logged, incidents = period.get("client_days") or 0, period.get("incidents") or 0
    observed = (f"; the period saw {incidents} detector incident(s) over {logged:,} client-days logged "
                f"({incidents / logged:.2g} per client-day, an upper bound on false alarms since it counts attacks too)"
                if logged else "; no client-day was logged in the period")
    advised = detection.get("advised_client_days") or 0
    if client_days < advised:
        return CheckResult(NOT_MET, f"{measured}: fewer than the {advised:,} client-days that hold such a rate, so it "
                                    f"is extrapolated, not measured{observed}.")
    return CheckResult(MET, f"{measured}{observed}.")


# --- the privacy gate -------------------------------------------------------------------------------------

def _candidate(candidate: Mapping[str, Any]) -> str:
    return f"candidate {candidate['id']} ({candidate.get('artifact_name') or short(candidate.get('artifact_sha256'))})"


@evidence_check("gate.candidates_gated")
def candidates_gated(facts: Facts) -> CheckResult:
    """Every artifact version deployed in scope came through the privacy gate with a passing verdict; a candidate
    the gate did not pass and that was promoted anyway is shown with the reason written for it."""
    over, passed, held, undecided = [], [], [], []
    for c in facts.candidates:
        name, verdict = _candidate(c), c.get("verdict")
        if c.get("promoted_version") and not c.get("passed_gate"):
            reason = c.get("promotion_reason")
            why = (c.get("reasons") or [""])[0]
            over.append(f"{name} was promoted to version {c['promoted_version']} by {c.get('promoted_by')} on "
                        f"{day(c.get('promoted_at'))} although the gate said {verdict or c.get('status')}"
                        + (f" ({why})" if why else "")
                        + (f", with the reason: \u201c{reason}\u201d" if reason else ", without a written reason"))
        elif c.get("promoted_version"):
            passed.append(f"{name} passed the gate ({verdict}) and became version {c['promoted_version']}")
        elif c.get("decided"):
            held.append(f"{name} was gated ({verdict}) and not promoted")
        else:
            undecided.append(f"{name} is {c.get('status')}" + (f" ({c['error']})" if c.get("error") else ""))
    ungated = [f"version {d['version']} (SHA-256 {short(d.get('sha256'))}) was deployed on {day(d.get('created_at'))} "
               "without passing through the gate" for d in facts.deployments
               if not d.get("first") and d.get("candidate") is None]
    said = "; ".join([*over, *ungated, *passed, *held, *undecided])
    if over or ungated:
        return CheckResult(NOT_MET, f"{said[0].upper()}{said[1:]}.")
    if passed or held:
        return CheckResult(MET, f"{said[0].upper()}{said[1:]}.")
    if undecided:
        return CheckResult(NOT_MEASURED, f"No candidate has a gate verdict yet: {said}.")
    return CheckResult(NOT_APPLICABLE, f"No candidate of {facts.slug} was gated and no new artifact version was "
                                       "deployed in the period.")
