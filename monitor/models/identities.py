"""Who a single sign-on account is at its identity provider: the issuer and the whole `sub` (OpenID Connect allows
255 characters, more than a username holds). An account with one is an SSO account: its personal API tokens expire
(ApiToken.issue), since the provider, not this app, decides whether the person still belongs."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class SsoIdentity(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="sso_identity")
    issuer = models.CharField(max_length=255, blank=True,
                              help_text="the provider's issuer; empty for accounts made before it was recorded")
    subject = models.CharField(max_length=255, help_text="the provider's `sub` for this person, whole")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_sso_subject")]

    def __str__(self) -> str:
        return f"{self.subject[:40]} at {self.issuer or 'the provider'}"
