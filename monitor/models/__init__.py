"""The monitoring app's tables, one module per concern."""
from monitor.models.alerts import (
    SEVERITIES,
    SEVERITY_RANK,
    Alert,
    AlertAccount,
    AlertEvent,
    AlertStatus,
    Delivery,
    NotificationChannel,
    Severity,
)
from monitor.models.identities import SsoIdentity
from monitor.models.queries import (
    ClientDayRollup,
    ModelHourRollup,
    QueryLog,
    QueryRollup,
    RollupWatermark,
    WorkerHeartbeat,
)
from monitor.models.registry import (
    SLUG_VALIDATOR,
    ModelArtifact,
    ReferenceDataset,
    RegisteredModel,
    UnseenCategory,
    validate_output_policy,
)
from monitor.models.restrictions import ClientRestriction, ClientUsage, RestrictionUsage
from monitor.models.scanning import DetectorFinding, DetectorState, ScannerState, ScanShard
from monitor.models.tokens import ApiToken, TokenUsage, hash_token
from monitor.models.vocabulary import (
    CLIENT_ID_MAX_LENGTH,
    UNRESOLVED,
    AlertEventKind,
    AlertSource,
    DeliveryEvent,
    DeliveryStatus,
)
from monitor.trail.models import TrailEntry, TrailHead

__all__ = [
    "CLIENT_ID_MAX_LENGTH", "UNRESOLVED", "AlertEventKind", "AlertSource", "DeliveryEvent", "DeliveryStatus",
    "SEVERITIES", "SEVERITY_RANK", "SLUG_VALIDATOR", "Alert", "AlertAccount", "AlertEvent", "AlertStatus", "Severity", "ApiToken", "ClientDayRollup", "ClientRestriction", "ClientUsage", "RestrictionUsage", "ModelHourRollup", "Delivery", "DetectorFinding", "DetectorState", "ScannerState", "ScanShard", "ModelArtifact", "SsoIdentity",
    "NotificationChannel", "QueryLog", "QueryRollup", "RollupWatermark", "ReferenceDataset", "RegisteredModel", "TokenUsage", "TrailEntry", "UnseenCategory", "TrailHead", "WorkerHeartbeat",
    "hash_token", "validate_output_policy",
]
