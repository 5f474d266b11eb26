from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from monitor.access import sso
from monitor.api import api
from monitor.dashboards import alert_views, audit_views, gate_views, metrics, throttle_views, views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("models/", views.model_list, name="model-list"),
    path("models/register/", views.model_register, name="model-register"),
    path("models/<slug:slug>/", views.model_detail, name="model-detail"),
    path("models/<slug:slug>/client", views.client_detail, name="client-detail"),
    path("models/<slug:slug>/client/restriction", alert_views.client_restriction, name="client-restriction"),
    path("models/<slug:slug>/audit/", audit_views.start_run, name="audit-start"),
    path("models/<slug:slug>/exposure/", audit_views.record_exposure, name="record-exposure"),
    path("models/<slug:slug>/exposure.csv", audit_views.exposure_download, name="exposure-download"),
    path("models/<slug:slug>/candidates/", gate_views.candidate_submit, name="candidate-submit"),
    path("models/<slug:slug>/client-rate-limit/", throttle_views.client_rate_limit, name="client-rate-limit"),
    path("models/<slug:slug>/candidates/<int:candidate_id>/", gate_views.candidate_detail, name="candidate-detail"),
    path("models/<slug:slug>/candidates/<int:candidate_id>/promote/", gate_views.candidate_promote,
         name="candidate-promote"),
    path("models/<slug:slug>/candidates/<int:candidate_id>/<str:kind>/", gate_views.candidate_report,
         name="candidate-report"),
    path("audits/<int:run_id>/", audit_views.run_detail, name="audit-run"),
    path("audits/<int:run_id>/hardened.skops", audit_views.hardened_download, name="hardened-download"),
    path("audits/<int:run_id>/evidence.zip", audit_views.evidence_download, name="audit-evidence"),
    path("evidence/public-key", audit_views.public_key, name="evidence-public-key"),
    path("alerts/", alert_views.alert_list, name="alert-list"),
    path("alerts/<int:alert_id>/", alert_views.alert_detail, name="alert-detail"),
    path("alerts/<int:alert_id>/<str:action>/", alert_views.alert_action, name="alert-action"),
    path("channels/", alert_views.channel_list, name="channel-list"),
    path("channels/<int:channel_id>/<str:action>/", alert_views.channel_action, name="channel-action"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True, extra_context={"sso": sso.enabled,
                                                                                      "local_login": sso.local_login}),
         name="login"),
    path("oidc/authenticate/", sso.start, name="oidc_authentication_init"),
    path("oidc/callback/", sso.callback, name="oidc_authentication_callback"),
    path("sso/denied/", sso.denied, name="sso-denied"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("metrics", metrics.metrics_view, name="metrics"),
]
