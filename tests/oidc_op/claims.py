"""The `groups` scope: the user's group names, the claim an identity provider maps to roles."""
from oidc_provider.lib.claims import ScopeClaims


class GroupsClaims(ScopeClaims):
    info_groups = ("Groups", "The groups you belong to.")

    def scope_groups(self) -> dict:
        return {"groups": sorted(self.user.groups.values_list("name", flat=True))}
