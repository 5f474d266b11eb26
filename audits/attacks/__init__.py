"""Membership-inference attacks and their metrics, on numpy arrays (no Django): see audit.run_attacks.

Each attack is a class registered in the catalogue by its family module; importing the package imports
every family module, so the catalogue is complete once `audits.attacks` is imported.
"""
from audits.attacks.audit import AuditConfig, AuditData, run_attacks
from audits.attacks.base import Attack, AttackInputs, AttackScores
from audits.attacks.bayes_optimal import BaseAttack, BaseSettings
from audits.attacks.catalogue import (
    ATTACK_LABELS,
    ATTACKS,
    TIER_1,
    TIER_1_NAMES,
    attack_label,
    attack_names,
    expand_attacks,
    register,
)
from audits.attacks.label_only import LabelOnlyAttack, LabelOnlyConfig
from audits.attacks.lira import LiraBayesAttack, LiraOfflineAttack, LiraOnlineAttack, LiraSettings
from audits.attacks.metrics import (
    AttackMetrics,
    ClassSlice,
    Headline,
    HeadlineRate,
    RateEstimate,
    evaluate,
    headline,
)
from audits.attacks.quantile import QuantileRegressionAttack
from audits.attacks.recommendations import Recommendation
from audits.attacks.reference import ReferenceModels, train_reference_models
from audits.attacks.results import AttackResult, AuditResult
from audits.attacks.rmia import RmiaAttack, RmiaSettings
from audits.attacks.scores import default_clip
from audits.attacks.threshold import ConfidenceAttack, LossAttack, ModifiedEntropyAttack
from audits.attacks.whatif import STANDARD_POLICIES, WhatIfRow

# The attacks the package ships with, in catalogue order (attack_names() also lists any registered later).
ALL_ATTACKS: tuple[str, ...] = attack_names()

__all__ = [
    "ALL_ATTACKS", "ATTACKS", "ATTACK_LABELS", "STANDARD_POLICIES", "TIER_1", "TIER_1_NAMES", "Attack",
    "AttackInputs", "AttackMetrics", "AttackResult", "AttackScores", "AuditConfig", "AuditData", "AuditResult",
    "BaseAttack", "BaseSettings", "ClassSlice", "ConfidenceAttack", "Headline", "HeadlineRate", "LabelOnlyAttack",
    "LabelOnlyConfig", "LiraBayesAttack", "LiraOfflineAttack", "LiraOnlineAttack", "LiraSettings", "LossAttack", "ModifiedEntropyAttack",
    "QuantileRegressionAttack",
    "RateEstimate", "Recommendation", "ReferenceModels", "RmiaAttack", "RmiaSettings", "WhatIfRow",
    "attack_label", "attack_names", "default_clip", "evaluate", "expand_attacks", "headline", "register",
    "run_attacks", "train_reference_models",
]
