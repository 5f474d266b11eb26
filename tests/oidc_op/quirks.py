"""Test users whose provider answers are wrong in one way each, so the tests see the relying party refuse each:
the ID token processing hook, the `sub` generator and the userinfo claims read these tables by username."""
from __future__ import annotations

from typing import Any

# Two 255-character subjects (the most OpenID Connect allows) equal in their first 200 characters.
LONG_SUBJECTS = {"long-a": "x" * 200 + "a" * 55, "long-b": "x" * 200 + "b" * 55}

# Claims of the ID token set to a value, or removed (None); a callable gets the token's claims.
ID_TOKEN = {
    "foreign-iss": {"iss": "https://idp.example/openid"},
    "foreign-aud": {"aud": "another-app"},
    "shared-aud": {"aud": ["mi-monitor", "another-app"]},
    "shared-aud-azp": {"aud": ["mi-monitor", "another-app"], "azp": "mi-monitor"},
    "foreign-azp": {"azp": "another-app"},
    "no-exp": {"exp": None},
    "no-iat": {"iat": None},
    "stale": {"exp": lambda claims: claims["iat"] - 60},
    "wrong-nonce": {"nonce": "not-the-nonce-sent"},
}

# A userinfo answer about someone other than the ID token's subject.
USERINFO_SUB = {"other-sub": "someone-else"}

QUIRKY_USERS = [*LONG_SUBJECTS, *ID_TOKEN, *USERINFO_SUB]


def subject(user: Any) -> str:
    """OIDC_IDTOKEN_SUB_GENERATOR: the user's id, as django-oidc-provider does, but for the long subjects."""
    return LONG_SUBJECTS.get(user.username, str(user.id))


def tamper_id_token(id_token: dict, user: Any, **kwargs: Any) -> dict:
    """OIDC_IDTOKEN_PROCESSING_HOOK: runs before the token is signed, so the signature stays valid."""
    for claim, value in ID_TOKEN.get(user.username, {}).items():
        if value is None:
            id_token.pop(claim, None)
        else:
            id_token[claim] = value(id_token) if callable(value) else value
    return id_token
