"""The `groups` scope: the user's group names, the claim an identity provider maps to roles."""
from oidc_provider.lib.claims import ScopeClaims

from tests.oidc_op.quirks import USERINFO_SUB


class GroupsClaims(ScopeClaims):
    info_groups = ("Groups", "The groups you belong to.")

    def scope_groups(self) -> dict:
        return {"groups": sorted(self.user.groups.values_list("name", flat=True))}

    def create_response_dic(self) -> dict:
        # Added to the userinfo answer after its `sub`, so a quirky user's answer names another subject.
        dic = super().create_response_dic()
        if self.user.username in USERINFO_SUB:
            dic["sub"] = USERINFO_SUB[self.user.username]
        return dic
