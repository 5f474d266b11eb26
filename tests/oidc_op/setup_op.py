"""Create the test provider's client and users: `python -m tests.oidc_op.setup_op REDIRECT_URI`."""
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_op.settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from oidc_provider.models import Client, ResponseType  # noqa: E402

from tests.oidc_op.quirks import QUIRKY_USERS  # noqa: E402

USERS = {"ana": ["sec-team", "everyone"], "greta": ["grc"], "nobody": ["marketing"],
         **{name: ["sec-team"] for name in QUIRKY_USERS}}

client = Client.objects.create(name="MI Monitor", client_type="confidential", client_id="mi-monitor",
                               client_secret="op-test-secret", jwt_alg="RS256", require_consent=False,  # noqa: S106
                               reuse_consent=True, _redirect_uris=sys.argv[1], _scope="openid email profile groups")
client.response_types.add(ResponseType.objects.get(value="code"))
for name, groups in USERS.items():
    user = User.objects.create_user(name, email=f"{name}@example.com", password="op-password-1")  # noqa: S106
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
print("ok")
