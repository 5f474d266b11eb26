"""The token endpoint with PKCE required: django-oidc-provider checks the verifier only for a code whose authorize
request carried a challenge, so a client that sends none would still be served. Here a code without an S256
challenge, or a token request without the matching verifier, gets `invalid_grant`."""
from __future__ import annotations

from oidc_provider.lib.endpoints.token import TokenEndpoint
from oidc_provider.lib.errors import TokenError
from oidc_provider.views import TokenView


class PkceRequiredTokenEndpoint(TokenEndpoint):
    def validate_params(self) -> None:
        super().validate_params()  # checks the verifier against the code's challenge when there is one
        if self.params["grant_type"] == "authorization_code" and self.code.code_challenge_method != "S256":
            raise TokenError("invalid_grant")


class PkceRequiredTokenView(TokenView):
    token_endpoint_class = PkceRequiredTokenEndpoint
