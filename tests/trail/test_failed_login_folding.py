"""Failed logins are folded per (address, minute): the first failure of a minute from an address is a chained trail
entry, later ones (locked out or not) only count, and the count reaches the trail when that address's next minute
starts or when the periodic fold runs. A flood costs O(1) chained entries a minute; the trail still says how many."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from monitor.tasks import fold_login_failures
from monitor.trail.hooks import USERNAMES_PER_WINDOW, minute_of, note_failed_login, note_lockout
from monitor.trail.models import LoginFailureWindow, TrailEntry, verify_chain
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.7"


def last_seq() -> int:
    return TrailEntry.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def entries_since(seq: int) -> list[TrailEntry]:
    return list(TrailEntry.objects.filter(seq__gt=seq).order_by("seq"))


def a_minute() -> datetime:
    """A minute that is over (ten minutes ago), so the tests choose every moment within it."""
    return minute_of(timezone.now()) - timedelta(minutes=10)


def counted(entries: list[TrailEntry], *, field: str, first_action: str) -> int:
    """What the trail says happened: each folded minute's count, plus 1 for a minute whose one entry says it all."""
    folded = {e.after["minute"]: e.after[field] for e in entries if e.action == "auth.login_failures"}
    alone = [e for e in entries if e.action == first_action and e.after["minute"] not in folded]
    return sum(folded.values()) + len(alone)


def test_a_flood_of_failed_logins_costs_a_few_chained_entries_a_minute_and_the_trail_counts_every_one(client):
    make_user(role="viewer", username="vera", password="a-long-password-1")
    mark = last_seq()
    started = timezone.now()
    n = 40  # past LOGIN_FAILURE_LIMIT (5): most of these are refused as locked out
    for i in range(n):
        client.post("/login/", {"username": "vera" if i % 2 else f"guess-{i}", "password": "wrong"})
    minutes = int((minute_of(timezone.now()) - minute_of(started)).total_seconds() // 60) + 1
    chained = entries_since(mark)
    # A minute's first failure and first lockout, and (from the second minute on) the count of the minute before.
    assert len(chained) <= 3 * minutes, [(e.action, e.at) for e in chained]

    LoginFailureWindow.objects.fold(now=timezone.now() + timedelta(minutes=2))
    entries = entries_since(mark)
    assert {e.action for e in entries} == {"auth.login_failed", "auth.locked_out", "auth.login_failures"}
    assert counted(entries, field="failures", first_action="auth.login_failed") == n
    assert counted(entries, field="locked_out", first_action="auth.locked_out") == n - 4  # from the fifth on
    assert all(e.ip == "127.0.0.1" and e.actor_name == "anonymous" for e in entries)
    assert not LoginFailureWindow.objects.exists()
    assert verify_chain()[0]


def test_later_failures_of_the_same_minute_only_count():
    minute = a_minute()
    mark = last_seq()
    for second in range(30):
        note_failed_login(address=ADDRESS, username="root", now=minute + timedelta(seconds=second))
    [entry] = entries_since(mark)
    assert (entry.action, entry.ip, entry.object_id, entry.after) == (
        "auth.login_failed", ADDRESS, "root", {"minute": minute.isoformat()})
    window = LoginFailureWindow.objects.get()
    assert (window.address, window.minute, window.failures, window.usernames) == (ADDRESS, minute, 30, ["root"])


def test_the_next_minutes_first_failure_writes_the_count_of_the_minute_before_it_first():
    minute = a_minute()
    for second in range(12):
        note_failed_login(address=ADDRESS, username="admin", now=minute + timedelta(seconds=second))
    mark = last_seq()
    note_failed_login(address=ADDRESS, username="admin", now=minute + timedelta(seconds=65))
    folded, first = entries_since(mark)
    assert folded.action == "auth.login_failures" and folded.ip == ADDRESS
    assert folded.after == {"minute": minute.isoformat(), "failures": 12, "locked_out": 0, "usernames": ["admin"],
                            "more_usernames": False}
    assert (first.action, first.after) == ("auth.login_failed", {"minute": (minute + timedelta(minutes=1)).isoformat()})
    assert list(LoginFailureWindow.objects.values_list("minute", "failures")) == [(minute + timedelta(minutes=1), 1)]


def test_the_periodic_fold_writes_each_closed_window_once_and_leaves_the_open_one():
    minute = a_minute()
    for second in range(5):
        note_failed_login(address=ADDRESS, username="a", now=minute + timedelta(seconds=second))
        note_failed_login(address="198.51.100.1", username="b", now=minute + timedelta(seconds=second))
    mark = last_seq()
    assert LoginFailureWindow.objects.fold(now=minute + timedelta(seconds=59)) == 0  # still open
    assert entries_since(mark) == []
    assert fold_login_failures.apply().get() == 2  # beat's task: every window closed by now
    folded = entries_since(mark)
    assert sorted((e.ip, e.after["failures"]) for e in folded) == [("198.51.100.1", 5), (ADDRESS, 5)]
    assert LoginFailureWindow.objects.fold(now=minute + timedelta(minutes=5)) == 0
    assert len(entries_since(mark)) == 2


def test_a_single_failure_needs_no_folded_entry():
    minute = a_minute()
    note_failed_login(address=ADDRESS, username="x", now=minute)
    mark = last_seq()
    assert LoginFailureWindow.objects.fold(now=minute + timedelta(minutes=1)) == 0
    assert entries_since(mark) == [] and not LoginFailureWindow.objects.exists()


def test_failures_while_locked_out_count_the_same_way():
    minute = a_minute()
    mark = last_seq()
    for second in range(20):
        at = minute + timedelta(seconds=second)
        note_failed_login(address=ADDRESS, username="vera", now=at)
        if second >= 4:  # the fifth failure locks the address out; every later one is refused as locked out
            note_lockout(address=ADDRESS, username="vera", now=at)
    chained = entries_since(mark)
    assert [e.action for e in chained] == ["auth.login_failed", "auth.locked_out"]
    LoginFailureWindow.objects.fold(now=minute + timedelta(minutes=1))
    [folded] = entries_since(chained[-1].seq)
    assert (folded.after["failures"], folded.after["locked_out"]) == (20, 16)


def test_a_window_keeps_a_capped_list_of_the_usernames_tried():
    minute = a_minute()
    for i in range(USERNAMES_PER_WINDOW + 30):
        note_failed_login(address=ADDRESS, username=f"user-{i:03d}" + "x" * 200,
                           now=minute + timedelta(milliseconds=i))
    mark = last_seq()
    LoginFailureWindow.objects.fold(now=minute + timedelta(minutes=1))
    [folded] = entries_since(mark)
    assert folded.after["failures"] == USERNAMES_PER_WINDOW + 30 and folded.after["more_usernames"] is True
    assert len(folded.after["usernames"]) == USERNAMES_PER_WINDOW
    assert all(len(name) <= 64 for name in folded.after["usernames"])
