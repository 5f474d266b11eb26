"""Registered models: their data, the latest audit and how many alerts are open; an admin changes settings."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Router

from audits.undetected import NoRecommendation, apply_recommended, undetected_attacker
from monitor.access import roles
from monitor.api.auth import get_model, needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import ClientRateLimitIn, ModelOut, ModelPatchIn, UndetectedAttackerOut
from monitor.gateway import client_limit
from monitor.models import RegisteredModel
from monitor.registry.summary import model_summary
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller

router = Router(tags=["models"])


@router.get("/models", auth=needs(roles.READ), summary="Registered models with their latest audit and open alerts",
            response={200: list[ModelOut], 403: dict})
def list_models(request: HttpRequest) -> list[dict]:
    return [model_out(model) for model in RegisteredModel.objects.all()]


def model_out(model: RegisteredModel) -> dict:
    """A model as the API shows it: its summary and what an undetected attacker can do on it."""
    return {**model_summary(model), "undetected_attacker": undetected_attacker(model)}


@router.get("/models/{slug}", auth=needs(roles.READ), summary="One registered model", response={200: ModelOut, 403: dict, 404: dict})
def model_detail(request: HttpRequest, slug: str) -> dict:
    return model_out(get_model(slug))


@router.patch("/models/{slug}", auth=needs(roles.CONFIGURE), summary="Change a model's settings (retention_days, auto_restrict_*)",
              response={200: ModelOut, 400: dict, 403: dict, 404: dict})
def update_model(request: HttpRequest, slug: str, body: ModelPatchIn) -> dict:
    """Only the fields sent change; each change is recorded in the security trail."""
    model = get_model(slug)
    changes = body.dict(exclude_unset=True, exclude_none=True)
    if not changes:
        raise ApiError(400, "nothing to change", [problem("retention_days", "send the field to change")])
    before = {name: getattr(model, name) for name in changes}
    for name, value in changes.items():
        setattr(model, name, value)
    try:
        model.full_clean(exclude=[f.name for f in model._meta.fields if f.name not in changes])
    except ValidationError as exc:
        raise ApiError(400, "nothing was changed", [problem(field, message) for field, messages
                                                    in exc.message_dict.items() for message in messages]) from None
    with transaction.atomic(), recorded_by_caller():  # this entry names the request's user and IP
        model.save(update_fields=[*changes, "updated_at"])
        TrailEntry.record(action="model.updated", actor=request_user(request), ip=client_ip(request), obj=model,
                          before=before, after=changes)
    return model_out(model)


@router.patch("/models/{slug}/client-rate-limit", auth=needs(roles.OPERATE),
              summary="Set the per-client throttle at the predict gateway (or apply the recommended one)",
              response={200: UndetectedAttackerOut, 400: dict, 403: dict, 404: dict, 409: dict})
def set_client_rate_limit(request: HttpRequest, slug: str, body: ClientRateLimitIn) -> dict:
    """`{"apply": "recommended"}` applies what `undetected_attacker.recommended_rate_limit` recommends now (with
    `target_records_per_account_day`, for that target); or send `per_minute` / `per_day` (0 or null: no limit).
    Answers the model's `undetected_attacker` after the change, which the security trail records."""
    model = get_model(slug)
    sent = body.dict(exclude_unset=True)
    if not sent:
        raise ApiError(400, "nothing to change", [problem("apply", 'send "recommended", or per_minute / per_day')])
    if body.apply and ({"per_minute", "per_day"} & sent.keys()):
        raise ApiError(400, "nothing was changed", [problem("apply", "send either apply or the limits, not both")])
    try:
        if body.apply:
            model = apply_recommended(model, target=body.target_records_per_account_day, actor=request_user(request),
                                      ip=client_ip(request))
        else:
            model = client_limit.set_limits(
                model, per_minute=sent.get("per_minute", model.client_queries_per_minute),
                per_day=sent.get("per_day", model.client_queries_per_day), target=body.target_records_per_account_day,
                actor=request_user(request), ip=client_ip(request))
    except NoRecommendation as exc:
        raise ApiError(409, "no throttle is recommended; nothing was changed", [problem("apply", exc.basis[:500])]) from None
    except client_limit.RateLimitError as exc:
        raise ApiError(400, "nothing was changed", [problem(exc.field, exc.message)]) from None
    return undetected_attacker(model)
