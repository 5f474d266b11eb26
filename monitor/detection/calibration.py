"""Calibrating a model's detectors on a window of its own traffic: the budget split between them, the window trimmed
of the clients a calibration on the other clients flags (`detectors/trimming.py`), and when traffic has outgrown a
small window (the advice: `DetectorState`)."""
from __future__ import annotations

import numpy as np
from django.conf import settings
from django.utils import timezone

from monitor.detection.context import ScanError, model_context, state_for
from monitor.detection.detectors import Detector, build_detectors, detector_names
from monitor.detection.detectors.trimming import trimmed_calibration
from monitor.detection.log_reader import load_window
from monitor.ingestion.store import safe_high_water
from monitor.models import AlertAccount, AlertSource, ClientDayRollup, DetectorState, RegisteredModel


def model_detectors(model: RegisteredModel) -> list[Detector]:
    """Every detector, each allowed an equal share of the model's false-alarm budget (Bonferroni): with one incident
    per actor, a benign client opens one when any detector fires, so the shares add up to the budget."""
    names = detector_names()
    share = float(model.false_alarm_budget) / len(names)
    return build_detectors({name: {"false_alarm_rate": share} for name in names})


def calibration_is_current(model: RegisteredModel, state: DetectorState) -> bool:
    """True when every detector was calibrated with the settings it scans with now (the budget included)."""
    return all((state.calibration.get(detector.name) or {}).get("settings") == detector.settings()
               for detector in model_detectors(model))


def calibrate_model(model: RegisteredModel, *, from_id: int = 0, to_id: int | None = None,
                    exclude_clients: tuple[str, ...] = (), max_rows: int | None = None,
                    reason: str = "requested") -> DetectorState:
    """Calibrate every detector on a window of the model's own (benign) traffic.

    Pick a window without known attackers (`exclude_clients`; clients in unresolved detector incidents are left out
    too, and trimmed_calibration leaves out those a calibration on the window's other clients finds far beyond benign);
    the thresholds it yields are stated as expected false-alarm rates per client-day in each detector's calibration.
    `reason` is recorded with the window (first scan, settings changed, traffic grew, requested).
    """
    state = state_for(model)
    previous = (state.calibration_window or {}).get("client_days")
    upto = safe_high_water(model) if to_id is None else to_id
    # A client in an unresolved incident is a known attacker: a recalibration must not learn its traffic as normal.
    suspects = sorted(set(AlertAccount.objects.filter(alert__model=model, alert__source=AlertSource.DETECTOR)
                          .exclude(alert__status="resolved").values_list("client_id", flat=True)) - set(exclude_clients))
    reference, last_id, shard = load_window(model, from_id=from_id, upto=upto,
                                            exclude_clients=(*exclude_clients, *suspects),
                                            cap=max_rows or settings.DETECTOR_CALIBRATION_ROWS)
    if len(reference) < settings.DETECTOR_MIN_CALIBRATION_ROWS:
        raise ScanError(f"{len(reference)} reference queries for {model.slug}; calibration needs at least "
                        f"{settings.DETECTOR_MIN_CALIBRATION_ROWS}")
    features = reference.features.astype(np.float64)
    stats = {"feature_means": features.mean(axis=0).tolist(), "feature_stds": features.std(axis=0).tolist()}
    state.calibration = {"_context": stats}
    context = model_context(model, state)
    trimmed = trimmed_calibration(reference, context, model_detectors(model))
    reference = trimmed.reference
    state.calibration = {"_context": stats, **trimmed.calibration}
    span = float(reference.timestamps.max() - reference.timestamps.min()) if len(reference) else 0.0
    clients = len(np.unique(reference.client_ids))
    state.calibration_window = {"from_id": from_id, "to_id": int(last_id), "queries": len(reference),
                                "clients": clients, "excluded_clients": list(exclude_clients),
                                "incident_clients": suspects,
                                "trimmed_clients": trimmed.trimmed, "client_sample": list(shard) if shard else None,
                                # What the window can vouch for: a rate far below 1 / client-days is extrapolated.
                                "client_days": round(clients * max(span / 86_400, 1 / 24), 1),
                                "reason": reason, "previous_client_days": previous}
    state.calibrated_at = timezone.now()
    state.save(update_fields=["calibration", "calibration_window", "calibrated_at"])
    return state


def grown_past_window(model: RegisteredModel, state: DetectorState) -> bool:
    """While the calibration window holds fewer client-days than the budget needs (`calibration_advice`), true once
    the model has logged DETECTOR_RECALIBRATE_GROWTH - 1 times as many client-days after the calibration as the window
    held. Each window at least doubles (growth 2), so a model that starts small is calibrated again a few times
    (log2 of 1,000 over its first window's client-days) and then no more. Counts the folded daily rollups."""
    growth = settings.DETECTOR_RECALIBRATE_GROWTH
    held = (state.calibration_window or {}).get("client_days")
    if growth <= 1 or held is None or held >= DetectorState.ADVISED_CLIENT_DAYS or state.calibrated_at is None:
        return False
    since = timezone.localtime(state.calibrated_at, timezone.get_default_timezone()).date()
    logged = ClientDayRollup.objects.filter(model=model, day__gt=since).count()
    return logged >= (growth - 1) * max(float(held), 1.0)
