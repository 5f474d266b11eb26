from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from tests.oidc_op.pkce import PkceRequiredTokenView

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="op_login.html"), name="login"),
    # Before the provider's own URLs, so the discovery document's token endpoint is this one.
    path("openid/token", csrf_exempt(PkceRequiredTokenView.as_view())),
    path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
]
