"""Membership-inference attacks and their metrics, on numpy arrays (no Django): see audit.run_attacks."""
from audits.attacks.audit import (
    ALL_ATTACKS,
    TIER_1,
    AttackResult,
    AuditResult,
    Recommendation,
    expand_attacks,
    run_attacks,
)
from audits.attacks.label_only import LabelOnlyConfig
from audits.attacks.metrics import (
    AttackMetrics,
    ClassSlice,
    Headline,
    HeadlineRate,
    RateEstimate,
    evaluate,
    headline,
)
from audits.attacks.reference import ReferenceModels, train_reference_models
from audits.attacks.scores import default_clip
from audits.attacks.whatif import STANDARD_POLICIES, WhatIfRow

__all__ = [
    "ALL_ATTACKS", "STANDARD_POLICIES", "TIER_1", "AttackMetrics", "AttackResult", "AuditResult", "ClassSlice",
    "Headline", "HeadlineRate", "LabelOnlyConfig", "RateEstimate", "Recommendation", "ReferenceModels",
    "WhatIfRow", "default_clip", "evaluate", "expand_attacks", "headline", "run_attacks", "train_reference_models",
]
