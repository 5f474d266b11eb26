"""Acting on a client at the gateway: restrict it, lift the restriction, list what is in force (also to the
model's ingestion token, so a serving layer that logs to us can poll and enforce them itself)."""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from monitor.access import roles
from monitor.api.auth import get_model, model_for_write, needs, request_user
from monitor.api.errors import ApiError, problem
from monitor.api.schemas import RestrictionIn, RestrictionOut
from monitor.gateway import restrictions
from monitor.models import ClientRestriction
from monitor.trail.hooks import client_ip

router = Router(tags=["restrictions"])
PATH = "/models/{slug}/clients/{client_id}/restriction"


@router.post(PATH, auth=needs(roles.OPERATE), summary="Restrict one client at the gateway",
             response={201: RestrictionOut, 400: dict, 403: dict, 404: dict})
def restrict_client(request: HttpRequest, slug: str, client_id: str, body: RestrictionIn) -> Status:
    """label_only / round:K reduce the client's outputs, throttle answers 429 past RESTRICTED_QUERIES_PER_MINUTE,
    block answers 403; until a time or until lifted. Replaces the client's current restriction."""
    model = get_model(slug)
    try:  # the client id is checked as ingestion checks it (restrictions.restrict)
        restriction = restrictions.restrict(model, client_id, action=body.action, until=body.until, reason=body.reason,
                                            user=request_user(request), ip=client_ip(request))
    except restrictions.RestrictionError as exc:
        raise ApiError(400, f"the restriction was not saved: {exc.message}", [problem(exc.field, exc.message)]) from None
    return Status(201, restrictions.describe(restriction))


@router.delete(PATH, auth=needs(roles.OPERATE), summary="Lift a client's restriction",
               response={200: RestrictionOut, 403: dict, 404: dict})
def lift_restriction(request: HttpRequest, slug: str, client_id: str) -> dict:
    lifted = restrictions.lift(get_model(slug), client_id, user=request_user(request), ip=client_ip(request))
    if lifted is None:
        raise ApiError(404, f"client {client_id!r:.140} has no restriction in force on {slug}")
    return restrictions.describe(lifted)


@router.get("/models/{slug}/restrictions", summary="The restrictions in force on a model's clients",
            response={200: list[RestrictionOut], 403: dict, 404: dict})
def list_restrictions(request: HttpRequest, slug: str) -> list[dict]:
    """Readable by every role and by the model's own ingestion token."""
    model = model_for_write(request, slug, user_roles=roles.READ)
    return [restrictions.describe(r) for r in ClientRestriction.objects.active().filter(model=model)
            .select_related("model", "created_by")]
