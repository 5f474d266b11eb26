"""Reading registered models: their data, the latest audit and how many alerts are open."""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from monitor.access import roles
from monitor.api.auth import get_model, require_roles
from monitor.api.schemas import ModelOut
from monitor.dashboards.panels import model_summary
from monitor.models import RegisteredModel

router = Router(tags=["models"])


@router.get("/models", summary="Registered models with their latest audit and open alerts",
            response={200: list[ModelOut], 403: dict})
def list_models(request: HttpRequest) -> list[dict]:
    require_roles(request, roles.READ)
    return [model_summary(model) for model in RegisteredModel.objects.all()]


@router.get("/models/{slug}", summary="One registered model", response={200: ModelOut, 403: dict, 404: dict})
def model_detail(request: HttpRequest, slug: str) -> dict:
    require_roles(request, roles.READ)
    return model_summary(get_model(slug))
