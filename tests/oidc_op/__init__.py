"""A real OpenID Connect provider for the SSO tests: django-oidc-provider in a Django project of its own, run as a
separate process on loopback (tests/access/test_sso.py starts it). Not part of the product."""
