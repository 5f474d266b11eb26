"""Account linking: one attacker's sweep dealt over several accounts."""

from __future__ import annotations


def accounts(scan_result) -> set[str]:
    return {c for c, attacker in scan_result.traffic.accounts.items() if attacker == "attacker-split"}


def test_links_every_account_of_a_split_sweep(attack_scan):
    split = accounts(attack_scan)
    assert len(split) > 1
    assert split <= attack_scan.flagged("account_linking")
    for account in split:
        linked = set(attack_scan.finding("account_linking", account).evidence["linked_clients"])
        assert linked and linked <= split - {account}


def test_a_single_account_attacker_is_not_linked(attack_scan):
    assert "attacker-noise" not in attack_scan.flagged("account_linking")


def test_stays_quiet_on_benign_traffic(benign_at_default_rate, benign_at_five_percent):
    for run in (benign_at_default_rate, benign_at_five_percent):
        assert len(run.flagged["account_linking"]) <= run.allowed()
