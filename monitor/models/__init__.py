"""The monitoring app's tables, one module per concern."""
from monitor.models.alerts import SEVERITIES, SEVERITY_RANK, Alert, AlertEvent, Delivery, NotificationChannel
from monitor.models.queries import ClientDayRollup, ModelHourRollup, QueryLog, QueryRollup, WorkerHeartbeat
from monitor.models.registry import (
    SLUG_VALIDATOR,
    ModelArtifact,
    ReferenceDataset,
    RegisteredModel,
    validate_output_policy,
)
from monitor.models.scanning import DetectorFinding, DetectorState
from monitor.models.tokens import ApiToken, TokenUsage, hash_token

__all__ = [
    "SEVERITIES", "SEVERITY_RANK", "SLUG_VALIDATOR", "Alert", "AlertEvent", "ApiToken", "ClientDayRollup", "ModelHourRollup", "Delivery", "DetectorFinding", "DetectorState", "ModelArtifact",
    "NotificationChannel", "QueryLog", "QueryRollup", "ReferenceDataset", "RegisteredModel", "TokenUsage", "WorkerHeartbeat",
    "hash_token", "validate_output_policy",
]
