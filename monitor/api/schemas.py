"""The shapes the API answers with, and the small request bodies it takes.

The response Schemas mirror `model_summary()`, `AuditRun.summary()`, `Alert.summary()` and
`NotificationChannel.summary()` key for key and in their order: ninja drops a key its response schema does not
declare, so a key added there must be added here too (tests/api/test_openapi_shapes.py fails until it is). Numbers
that the summaries may hold as int or float are `Number`, which keeps the value as it came (`float` would turn a
stored 0 into 0.0). Free-form content (evidence, ROC points, configs) is `dict[str, Any]`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema

from audits.models import RunStatus, Trigger
from monitor.models import AlertStatus, Severity
from monitor.platform.moments import in_utc

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]

# Every 4xx/5xx answer; MonitorApi documents it on each operation (the `dict` in a `response=` error status only
# lists the status: ninja never validates an error, the exception handlers write it).
ERROR_SCHEMA = {
    "type": "object", "required": ["error", "details"],
    "properties": {
        "error": {"type": "string", "minLength": 1, "description": "what is wrong, in one sentence"},
        "details": {"type": "array", "items": {"type": "object", "required": ["message"], "properties": {
            "index": {"type": ["integer", "null"], "description": "the offending row of a batch"},
            "field": {"type": ["string", "null"]}, "message": {"type": "string"}}}},
    },
}


# --- text and times every request body takes ------------------------------------------------------

def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")  # PostgreSQL text cannot store them
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800"): no database can store it, nor look it up
        raise ValueError("must be valid Unicode (a lone surrogate escape such as \\ud800 is not)") from None
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


# A time with a timezone, as UTC: a naive time cannot be compared with the server's, and one past year 9999 in UTC
# cannot be stored.
Moment = Annotated[datetime, AfterValidator(in_utc)]


# --- audits ---------------------------------------------------------------------------------------

class RateOut(Schema):
    """The headline's rate at one FPR target: the strongest attack's, with a 95 % interval that holds whichever attack
    won (simultaneous over the attacks compared) and counts the threshold's noise as well as the members'."""

    value: Number = Field(..., description="a fraction, not a percent")
    low: Number = Field(..., description="the largest of the attacks' lower bounds, each at 1 − 0.05 / n_compared")
    high: Number = Field(..., description="the largest of the attacks' upper bounds, each at 1 − 0.05 / n_compared")
    attack: str
    reliable: bool = Field(..., description="enough non-members to measure this FPR (about 10 false positives)")
    expected_false_positives: Number | None = Field(
        None, description="non-members × FPR: the false positives this figure rests on (absent in older runs)")
    n_compared: int | None = Field(None, description="attacks the best was chosen among (absent in older runs: their "
                                                     "interval was the chosen attack's own, too narrow)")


class AttackRateOut(Schema):
    """One attack's rate at one FPR target (the attack is the one it belongs to)."""

    value: Number
    low: Number
    high: Number
    reliable: bool
    expected_false_positives: Number | None = None


class HeadlineOut(Schema):
    auc: Number
    auc_attack: str
    epsilon_lower: Number
    epsilon_attack: str
    tpr_at_fpr: dict[str, RateOut] = Field(..., description='keyed by FPR target: "0.001", "0.01", "0.1"')


class AttackOut(Schema):
    name: str
    auc: Number
    advantage: Number
    balanced_accuracy: Number
    epsilon_lower: Number
    tpr_at_fpr: dict[str, AttackRateOut] = Field(..., description='keyed by FPR target: "0.001", "0.01", "0.1"')
    n_members: int
    n_nonmembers: int


class AttackFullOut(AttackOut):
    roc: dict[str, Any] = Field(..., description='{"fpr": [...], "tpr": [...]}, exact below 1 % FPR')
    per_class: list[dict[str, Any]]
    seconds: Number
    details: dict[str, Any]
    n_top_exposed: int = Field(..., description="how many member records the attack names as most exposed")


class AttackMemberIdsOut(AttackFullOut):
    """For the roles that may look a record up (admin, security, compliance) only; each answer is in the trail."""

    top_exposed: list[int | str] = Field(..., description="member record ids, most exposed first (ids only)")


class PolicyVerdictOut(Schema):
    passed: bool
    verdict: Literal["passed", "breached", "inconclusive"] | None = Field(
        None, description="inconclusive: a weak audit (the strongest attacks could not run as the data would allow); "
                          "absent in runs judged before it existed")
    weak_audit: list[str] = Field(default_factory=list, description="why the audit is weak, and what to upload")
    breaches: list[dict[str, Any]]
    regression: dict[str, Any] | None


class RateWithIntervalOut(Schema):
    value: float | None = None
    low: float | None = None
    high: float | None = None
    attack: str | None = None


class RemediationCandidateOut(Schema):
    setting: dict[str, Any] = Field(description="what changed from today's model, by parameter name ({} for today's)")
    kind: str = Field(description="current, regularised or dp (differentially private training)")
    accuracy: float | None = Field(description="on held-out non-members; null if the candidate failed")
    accuracy_interval: list[float | None]
    train_accuracy: float | None
    accuracy_cost: float | None = Field(description="today's accuracy minus this one's (negative: more accurate)")
    tpr_at_1pct_fpr: RateWithIntervalOut
    tpr_at_01pct_fpr: RateWithIntervalOut
    auc: float | None
    epsilon_lower: float | None
    seconds: float
    error: str | None
    deployable: bool = Field(True, description="saves as a scikit-learn skops file the registry accepts; only "
                                               "deployable candidates are recommended")


class RemediationOut(Schema):
    current: RemediationCandidateOut | None = Field(None, description="today's model under the same attacks")
    candidates: list[RemediationCandidateOut]
    recommended: int | None = Field(description="index into candidates: least leakage within the accuracy budget")
    max_accuracy_cost: float | None = None
    attacks: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float | None = None
    artifact: dict[str, Any] | None = Field(None, description="the recommended candidate's skops file: sha256, size, "
                                                               "download URL and provenance (or why there is none)")


class AuditRunOut(Schema):
    id: int
    model: str
    status: RunStatus
    trigger: Trigger
    progress: int = Field(..., description="0-100")
    step: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    headline: HeadlineOut | None = Field(..., description="null until the run is done")
    attacks: list[AttackOut]
    policy: PolicyVerdictOut | None
    remediation: RemediationOut | None = Field(None, description="hardened candidates, when the run tried them")


class AuditRunFullOut(AuditRunOut):
    """`?full=true`: ROC points, per-class slices, what-if, recommendations and provenance as well."""

    attacks: list[AttackFullOut]
    what_if: list[dict[str, Any]] | None
    recommendations: list[dict[str, Any]] | None
    accuracy: dict[str, Any] | None
    notes: list[str] | None
    timings: dict[str, Any] | None
    model_version: int
    artifact_sha256: str
    data_sha256: dict[str, str]
    config: dict[str, Any]
    environment: dict[str, Any]
    attack_config: dict[str, Any] | None


class AuditRunMemberIdsOut(AuditRunFullOut):
    """`?full=true` to a role that may look a record up: each attack's most exposed member ids as well."""

    attacks: list[AttackMemberIdsOut]


class AuditStartedOut(Schema):
    id: int
    status: RunStatus


# --- models ---------------------------------------------------------------------------------------

class DatasetOut(Schema):
    rows: int
    sha256: str


class UnseenOut(Schema):
    values: int = Field(..., description="distinct categories the queries carried that training never saw")
    queries: int = Field(..., description="logged queries that carried one of them")


class FeatureOut(Schema):
    name: str
    kind: str = Field(..., description="numeric or categorical")
    categories: list[str] | None = Field(None, description="(categorical) the training categories, in code order")
    missing_seen: bool = Field(..., description="the registration data has empty cells here")
    missing_accepted: bool = Field(..., description="the model answers a row with this feature missing (null)")
    unseen_accepted: bool | None = Field(None, description="(categorical) the model answers a category it never saw")
    unseen: UnseenOut | None = None


class RateLimitOut(Schema):
    per_minute: int | None = Field(None, description="queries one client may send a minute (null: no limit)")
    per_day: int | None = Field(None, description="queries one client may send a UTC day (null: no limit)")


class RecommendedRateLimitOut(RateLimitOut):
    client_days_over: int | None = Field(None, description="logged client-days of the last 14 days that sent more "
                                                           "than per_day (what the throttle would have cut)")
    client_days: int | None = Field(None, description="logged client-days of the last 14 days")


class UndetectedAttackerOut(Schema):
    """What an attacker who reads the detectors' calibration can do per account-day without opening an incident
    (audits.undetected); null figures before the first calibration or audit, `basis` saying what is missing."""

    records_per_account_day: int | None = Field(..., description="candidate records one account can test a day "
                                                                 "under every detector's threshold and the throttle")
    tpr_at_1pct_fpr: float | None = Field(..., description="the latest finished audit's headline TPR at 1 % FPR")
    tpr_interval: list[float] | None = Field(None, description="its interval [low, high]")
    audit_id: int | None = None
    target_records_per_account_day: int = Field(..., description="set by the security team: the records an "
                                                                 "account-day may test before a throttle is recommended")
    current_rate_limit: RateLimitOut
    recommended_rate_limit: RecommendedRateLimitOut = Field(
        ..., description="the per-client throttle that keeps it within the target (nulls: none needed or not known)")
    basis: str = Field(..., description="what each figure rests on, or what is missing")
    per_account: str


class ClientRateLimitIn(Schema):
    """The model's per-client throttle at the predict gateway: send `apply: "recommended"` (optionally with a new
    target), or the limits themselves (0 or null: no limit); fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    apply: Literal["recommended"] | None = Field(None, description='"recommended": the throttle '
                                                                  'undetected_attacker recommends now')
    per_minute: int | None = Field(None, ge=0, le=100_000_000)
    per_day: int | None = Field(None, ge=0, le=100_000_000)
    target_records_per_account_day: int | None = Field(None, ge=1, le=100_000_000)


class ModelOut(Schema):
    slug: str
    name: str
    team: str
    source: str = Field(..., description="skops, onnx, xgboost_json, xgboost_ubj, lightgbm_text or endpoint")
    n_features: int
    feature_names: list[str]
    features: list[FeatureOut] = Field(..., description="each feature's name, kind, categories and missing values")
    classes: list[str]
    output_policy: str
    version: int
    retention_days: int = Field(..., description="days of raw queries kept; rollups, findings, alerts and audits stay")
    auto_restrict: dict[str, Any] | None = Field(
        None, description='{"action", "severity", "hours"} when detector alerts restrict their client automatically')
    false_alarm_budget: float = Field(..., description="false incidents per benign client-day, all detectors together")
    artifact_sha256: str | None
    datasets: dict[str, DatasetOut] = Field(..., description="keyed by kind: members, nonmembers, population")
    queries_logged: int
    clients: int
    open_alerts: int
    latest_audit: AuditRunOut | None
    undetected_attacker: UndetectedAttackerOut


class CandidateOut(Schema):
    """A privacy-gate candidate (audits.candidates.summary)."""

    id: int
    model: str
    url: str = Field(..., description="this candidate in the API (poll it)")
    page: str = Field(..., description="this candidate's page")
    status: Literal["queued", "running", "done", "failed"]
    progress: int = Field(..., description="0-100 while it is audited")
    step: str
    error: str = Field(..., description="why it could not be gated (status failed)")
    verdict: str = Field(..., description="pass, warn, fail or undecided once done; empty before")
    exit_code: int | None = Field(None, description="what a CI step exits with: 0 pass or warn, 1 fail, 2 undecided")
    artifact_name: str
    artifact_sha256: str
    artifact_format: str
    artifact_size: int
    own_members_rows: int | None = Field(None, description="rows of the candidate's own members CSV, if it sent one")
    production_version: int = Field(..., description="the model version it was gated against")
    alpha: float | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report: dict[str, Any] | None = Field(None, description="the gate's report: verdict, reasons, the paired "
                                                            "comparison at each FPR target, the policy limits")
    promoted_version: int | None
    promoted_by: str | None
    promoted_at: datetime | None
    promotion_reason: str
    needs_reason_to_promote: bool | None = Field(None, description="a failed or undecided candidate is promoted only "
                                                                   "with a written reason")


class ModelPatchIn(Schema):
    """The settings of a model an admin may change through the API; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    retention_days: int | None = Field(None, ge=1, le=3650, description="days of raw queries to keep")
    auto_restrict_action: str | None = Field(
        None, description='restrict a client at the gateway when a detector alert about it reaches '
                          '`auto_restrict_severity`: "label_only", "round:K", "throttle", "block", or "" (off)')
    auto_restrict_severity: Literal["warning", "critical"] | None = None
    auto_restrict_hours: int | None = Field(None, ge=1, le=720)
    false_alarm_budget: float | None = Field(None, gt=0, le=0.1, description="false incidents per benign client-day, "
                                             "all detectors together (default 0.001); a change recalibrates")


class AuditPolicyOut(Schema):
    """How and how often a model is audited, and the leakage it may show before an alert opens."""

    enabled: bool
    cadence_hours: int
    attacks: list[str]
    n_reference: int
    stand_in: str
    max_eval_records: int
    what_if: bool
    seed: int
    max_tpr_at_1pct_fpr: Number
    max_epsilon_lower: Number
    regression_factor: Number
    remediation: bool = Field(description="scheduled audits also train and attack hardened candidates")
    max_accuracy_cost: Number = Field(description="the recommended candidate loses at most this accuracy (0.01 = 1 point)")
    gate_alpha: Number = Field(description="the privacy gate's significance level: a candidate fails when it leaks more "
                                           "than production at this level")


class AuditPolicyPatchIn(Schema):
    """Fields left out keep their value; a policy that could not run is refused (400) and nothing changes."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    cadence_hours: int | None = Field(None, ge=1, le=24 * 365)
    attacks: list[str] | None = Field(None, description='catalogue names, or "threshold" for that family')
    n_reference: int | None = Field(None, ge=1, le=64)
    stand_in: Literal["random_forest", "gradient_boosting", "logistic_regression", "mlp"] | None = None
    max_eval_records: int | None = Field(None, ge=1, le=1_000_000)
    what_if: bool | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    max_tpr_at_1pct_fpr: float | None = None
    max_epsilon_lower: float | None = None
    regression_factor: float | None = None
    remediation: bool | None = None
    max_accuracy_cost: float | None = Field(None, ge=0, le=1)
    gate_alpha: float | None = Field(None, gt=0, lt=0.5)


class RestrictionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(..., description='"label_only", "round:K", "throttle" or "block"')
    until: Moment | None = Field(None, description="ISO 8601 with a timezone; null: until lifted")
    reason: Text = Field(..., max_length=2000, description="why: recorded in the security trail and on the client's alerts")


class RestrictionOut(Schema):
    id: int
    model: str
    client_id: str
    action: str
    until: datetime | None
    reason: str
    created_at: datetime
    created_by: str | None
    lifted_at: datetime | None
    lift_reason: str | None = Field(None, description="lifted, expired or replaced")


class IngestResultOut(Schema):
    accepted: int
    duplicates: int = Field(..., description="rows whose request_id was already stored")


class PredictOut(Schema):
    outputs: list[list[float]] = Field(..., description="one row per input row, after the output policy")
    labels: list[str]
    output_policy: str


# --- alerts and channels --------------------------------------------------------------------------

class AlertOut(Schema):
    id: int
    fingerprint: str
    source: str = Field(..., description="audit or detector")
    kind: str
    title: str
    model: str
    client: str | None
    incident: bool
    severity: Severity
    status: AlertStatus
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    evidence: dict[str, Any]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str
    resolved_by: str | None
    resolved_at: datetime | None
    muted_until: datetime | None
    mute_reason: str


class ChannelOut(Schema):
    id: int
    name: str
    kind: str = Field(..., description="email, slack, webhook, pagerduty or teams")
    target: str = Field(..., description="webhook URLs and routing keys show only their start")
    min_severity: Severity
    models: list[str] | None = Field(..., description="null: every model")
    enabled: bool
    rate_limit_per_hour: int
    digest: bool
    last_error: str | None
    last_error_at: datetime | None
    disabled_reason: str | None


class ChannelCreatedOut(ChannelOut):
    secret: str | None = Field(None, description="webhook: the signing secret, shown this once")


class ChannelTestOut(Schema):
    status: Literal["queued"]
    delivery: int = Field(..., description="the test message's outbox row")


# --- request bodies -------------------------------------------------------------------------------

class BodyIn(BaseModel):
    """Request bodies are plain pydantic models, which take only a JSON object: ninja's Schema reads attributes off
    any value, so a body of `true` or `[1]` would pass as one with every field at its default. An unknown field is
    an error that names it (like a query row's), not a typo silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AckIn(BodyIn):
    note: Text = Field("", max_length=2000)


class MuteIn(BodyIn):
    until: Moment
    reason: Text = Field(..., min_length=1, max_length=500)


class ChannelIn(BodyIn):
    name: Text = Field(..., min_length=1, max_length=100)
    kind: str = Field(..., pattern="^(email|slack|webhook|pagerduty|teams)$")
    target: Text = Field(..., min_length=1, max_length=2000,
                         description="email: addresses; slack, teams, webhook: the URL; pagerduty: the routing key")
    secret: Text | None = Field(None, max_length=200, description="webhook only: a whsec_ signing secret to use "
                                                                 "(default: one is generated and returned once)")
    min_severity: str = Field("warning", pattern="^(info|warning|critical)$")
    models: list[Text] | None = None
    rate_limit_per_hour: int = Field(30, ge=1, le=10_000)
    digest: bool = True


class AttackExposureOut(Schema):
    attack: str
    rank: int = Field(description="1 = the member this attack is surest about")
    n_members: int = Field(description="members evaluated in this audit")
    percentile: float = Field(description="share of the evaluated members this record is at least as exposed as (%)")
    most_exposed: bool = Field(description="among the audit's most exposed records (its top_exposed list)")
    flagged_at_fpr: dict[str, bool] = Field(description="would an attacker thresholding at this FPR call it a member")


class AuditExposureOut(Schema):
    audit_id: int
    finished_at: datetime | None
    model_version: int
    evaluated: bool = Field(description="false when the audit sampled other members for evaluation")
    reason: str | None = None
    attack: str | None = Field(None, description="the audit's leading attack (the figures below are under it)")
    leading_attack: bool | None = None
    rank: int | None = None
    n_members: int | None = None
    percentile: float | None = None
    most_exposed: bool | None = None
    flagged_at_fpr: dict[str, bool] | None = None
    attacks: list[AttackExposureOut] = Field(default_factory=list, description="the record under every attack")


class RecordExposureOut(Schema):
    model: str
    record_id: str
    audits: list[AuditExposureOut] = Field(description="newest finished audit first")


# --- tokens ---------------------------------------------------------------------------------------

class TokenOut(Schema):
    """`ApiToken.summary()`: never the secret or its hash."""
    id: int
    kind: Literal["ingest", "user", "metrics"]
    prefix: str = Field(..., description="the token's first characters; tokens may share one (name a token by id)")
    user: str | None = Field(..., description="a personal token's owner")
    model: str | None = Field(..., description="an ingestion token's model")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None = Field(..., description="refused from then on; null: never expires")
    revoked_at: datetime | None
