"""The model page's throttle form: apply the per-client throttle recommended from what an undetected attacker can do
(`audits.undetected`), for the target the form sends, or remove the throttle. A POST; the trail records it."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from audits.undetected import NoRecommendation, apply_recommended
from monitor.access import roles
from monitor.gateway import client_limit
from monitor.models import RegisteredModel
from monitor.trail.hooks import client_ip


@roles.role_required(*roles.OPERATE)
@require_POST
def client_rate_limit(request: HttpRequest, slug: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, slug=slug)
    action = request.POST.get("action")
    try:
        if action == "apply":
            raw = (request.POST.get("target") or "").strip()
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:  # "²" is a digit to str.isdigit, not to int()
                raise client_limit.RateLimitError("target", "must be a whole number of records per account-day")
            model = apply_recommended(model, target=int(raw), actor=request.user, ip=client_ip(request))
            messages.success(request, f"Throttle applied: at most {model.client_queries_per_day:,} queries a day and "
                                      f"{model.client_queries_per_minute:,} a minute from any one client.")
        elif action == "remove":
            client_limit.set_limits(model, per_minute=0, per_day=0, actor=request.user, ip=client_ip(request))
            messages.success(request, "Throttle removed: the gateway no longer limits this model's clients.")
        else:
            messages.error(request, "action: expected apply or remove; nothing was changed")
    except NoRecommendation as exc:
        messages.error(request, f"No throttle is recommended; nothing was changed. {exc.basis}")
    except client_limit.RateLimitError as exc:
        messages.error(request, f"{exc.field}: {exc.message}; nothing was changed")
    return redirect(f"/models/{model.slug}/#undetected-attacker")
