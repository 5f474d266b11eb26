"""Registered models: their data, the latest audit and how many alerts are open; an admin changes settings."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Router

from monitor.access import roles
from monitor.api.auth import get_model, needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import ModelOut, ModelPatchIn
from monitor.models import RegisteredModel
from monitor.registry.summary import model_summary
from monitor.trail.hooks import client_ip
from monitor.trail.models import TrailEntry
from monitor.trail.recording import recorded_by_caller

router = Router(tags=["models"])


@router.get("/models", auth=needs(roles.READ), summary="Registered models with their latest audit and open alerts",
            response={200: list[ModelOut], 403: dict})
def list_models(request: HttpRequest) -> list[dict]:
    return [model_summary(model) for model in RegisteredModel.objects.all()]


@router.get("/models/{slug}", auth=needs(roles.READ), summary="One registered model", response={200: ModelOut, 403: dict, 404: dict})
def model_detail(request: HttpRequest, slug: str) -> dict:
    return model_summary(get_model(slug))


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
    return model_summary(model)
