"""Failed-login limiting and the client address, as tables that read like the rules in
``auth/login_limits.py`` (3 failures allowed in a 60-second window; a known client is
remembered for 1000 seconds)."""

from __future__ import annotations

import ipaddress

import pytest

from auth.login_limits import LoginLimiter, client_address, parse_trusted_proxies

MAX, WINDOW, REMEMBER = 3, 60.0, 1000.0
A, B, C = "198.51.100.1", "198.51.100.2", "203.0.113.9"  # client addresses
PROXY = "10.0.0.2"  # one address for everybody behind it


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# An event: (second, "fail" | "ok", address, user name).
Event = tuple[float, str, str, str]


def fails(n: int, address: str, name: str, at: float = 0.0) -> list[Event]:
    return [(at, "fail", address, name)] * n


def spray(n: int, address: str, at: float = 0.0) -> list[Event]:
    """``n`` failures from ``address``, each for a made-up name."""
    return [(at, "fail", address, f"nobody-{i}") for i in range(n)]


CASES: list[tuple[str, list[Event], tuple[float, str, str], int | None]] = [
    # (rule, what happened, (second, address, name) of the attempt, Retry-After or None)
    ("nothing failed: go ahead", [], (0, A, "a1"), None),
    ("two failures are under the limit", fails(2, A, "a1"), (10, A, "a1"), None),
    ("three failures as a1 from A hold A back for a1 until the window passes",
     fails(3, A, "a1"), (10, A, "a1"), 50),
    ("a part of a second left counts as a whole one", fails(3, A, "a1"), (59.5, A, "a1"), 1),
    ("failures leave the window", fails(3, A, "a1"), (60, A, "a1"), None),
    ("the window slides: the oldest of the last three decides",
     [(0, "fail", A, "a1"), (30, "fail", A, "a1"), (40, "fail", A, "a1")], (45, A, "a1"), 15),
    ("three failures as a1 from anywhere close the name to other addresses",
     fails(1, A, "a1") + fails(1, B, "a1") + fails(1, C, "a1", at=20), (30, "192.0.2.7", "a1"),
     30),
    ("a1's failures from A hold a1 back from B too", fails(3, A, "a1"), (10, B, "a1"), 50),
    ("... but not from an address a1 logged in from lately",
     [(0, "ok", B, "a1"), *fails(3, A, "a1", at=5)], (10, B, "a1"), None),
    ("... which is still held by its own failures",
     [(0, "ok", B, "a1"), *fails(3, B, "a1", at=5)], (10, B, "a1"), 55),
    ("... and is forgotten after a while",
     [(0, "ok", B, "a1"), *fails(3, A, "a1", at=1000)], (1010, B, "a1"), 50),
    ("a success erases no failures", [*fails(3, A, "a1"), (5, "ok", A, "a1")], (10, A, "a1"),
     50),
    ("other names' failures from A never hold a1 back from A", spray(100, A), (0, A, "a1"),
     None),
    ("behind one proxy: a spray of names does not lock out a1 or the admin",
     spray(12, PROXY), (1, PROXY, "admin"), None),
    ("a1's failures do not hold back a2", fails(3, A, "a1"), (10, A, "a2"), None),
    ("names are counted whether or not they exist", fails(3, A, "nobody"), (10, B, "nobody"),
     50),
]


@pytest.mark.parametrize(("rule", "history", "attempt", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_login_limits(rule: str, history: list[Event], attempt: tuple[float, str, str],
                      expected: int | None) -> None:
    clock = Clock()
    limiter = LoginLimiter(MAX, WINDOW, remember_seconds=REMEMBER, clock=clock)
    for at, outcome, address, name in history:
        clock.now = at
        (limiter.failed if outcome == "fail" else limiter.succeeded)(address, name)
    clock.now, address, name = attempt
    assert limiter.retry_after(address, name) == expected


def test_memory_is_bounded_under_a_spray_of_names() -> None:
    clock = Clock()
    limiter = LoginLimiter(MAX, WINDOW, max_entries=100, clock=clock)
    for i in range(10_000):
        limiter.failed(PROXY, f"nobody-{i}")
        limiter.succeeded(f"192.0.2.{i % 250}", f"user-{i}")
    assert len(limiter._by_name._times) <= 100
    assert len(limiter._by_pair._times) <= 100
    assert len(limiter._known) <= 100
    # Evicting a counter takes max_entries failures for other names since its last one.
    for _ in range(MAX):
        limiter.failed(A, "a1")
    for i in range(99):
        limiter.failed(B, f"other-{i}")
    assert limiter.retry_after(A, "a1") is not None
    limiter.failed(B, "one-more")
    assert limiter.retry_after(A, "a1") is None


def test_expired_counters_go_first() -> None:
    clock = Clock()
    limiter = LoginLimiter(MAX, WINDOW, max_entries=100, clock=clock)
    for i in range(50):
        limiter.failed(A, f"old-{i}")
    clock.now = WINDOW + 1
    limiter.failed(A, "new")
    assert list(limiter._by_name._times) == ["new"]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        LoginLimiter(0, WINDOW)
    with pytest.raises(ValueError):
        LoginLimiter(MAX, 0)


TRUSTED = "10.0.0.0/8, ::1"
ADDRESSES = [
    # (peer, X-Forwarded-For, trusted proxies, client address)
    ("203.0.113.5", None, "", "203.0.113.5"),
    ("203.0.113.5", "192.0.2.1", "", "203.0.113.5"),  # no trusted proxy: header ignored
    ("203.0.113.5", "192.0.2.1", TRUSTED, "203.0.113.5"),  # peer not trusted: ignored
    ("10.0.0.2", "198.51.100.7", TRUSTED, "198.51.100.7"),
    ("10.0.0.2", "6.6.6.6, 198.51.100.7", TRUSTED, "198.51.100.7"),  # left of it: invented
    ("10.0.0.2", "198.51.100.7, 10.0.0.3", TRUSTED, "198.51.100.7"),  # a chain of proxies
    ("10.0.0.2", "10.0.0.9, 10.0.0.3", TRUSTED, "10.0.0.9"),  # all trusted: the left-most
    ("10.0.0.2", "198.51.100.7, not-an-ip", TRUSTED, "10.0.0.2"),  # stop at the trusted hop
    ("10.0.0.2", "", TRUSTED, "10.0.0.2"),
    ("10.0.0.2", "198.51.100.7:5123", TRUSTED, "198.51.100.7"),  # with a port
    ("::1", "[2001:db8::1]:443", TRUSTED, "2001:db8::1"),
    ("::ffff:10.0.0.2", "198.51.100.7", TRUSTED, "198.51.100.7"),  # IPv4 on a v6 socket
    ("10.0.0.2", "::ffff:198.51.100.7", TRUSTED, "198.51.100.7"),
    ("10.0.0.2", "198.51.100.7", "10.0.0.2", "198.51.100.7"),  # a single address
    ("2001:DB8:0::1", None, "", "2001:db8::1"),  # canonical
    (None, "198.51.100.7", "0.0.0.0/0", ""),  # no peer (a Unix socket)
    ("unix-socket", "198.51.100.7", "0.0.0.0/0", "unix-socket"),
]


@pytest.mark.parametrize(("peer", "forwarded_for", "trusted", "expected"), ADDRESSES)
def test_client_address(peer: str | None, forwarded_for: str | None, trusted: str,
                        expected: str) -> None:
    assert client_address(peer, forwarded_for, parse_trusted_proxies(trusted)) == expected


def test_parse_trusted_proxies() -> None:
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies("10.0.0.0/8,::1  192.0.2.1") == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"),
        ipaddress.ip_network("192.0.2.1"))
    assert parse_trusted_proxies(["10.1.2.3/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match="'proxy.local'"):
        parse_trusted_proxies("10.0.0.1, proxy.local")


def test_attempts_being_verified_count_as_failures() -> None:
    """Guesses sent at once get no more tries than guesses sent one after another."""
    clock = Clock()
    limiter = LoginLimiter(MAX, WINDOW, clock=clock)
    for _ in range(MAX):
        assert limiter.reserve(A, "a1") is None
    assert limiter.reserve(A, "a1") == 1  # all places taken by attempts in flight
    assert limiter.reserve(B, "a1") == 1  # the name is full too, from anywhere
    assert limiter.reserve(A, "a2") is None  # other names are not held back
    limiter.release(A, "a2")
    for _ in range(MAX - 1):
        limiter.failed(A, "a1")
        limiter.release(A, "a1")
    # MAX - 1 failures and one in flight: wait as if it failed too
    assert limiter.reserve(A, "a1") == WINDOW
    limiter.succeeded(A, "a1")
    limiter.release(A, "a1")
    assert limiter.reserve(A, "a1") is None  # a1 succeeded from A: only A's own count holds
    limiter.release(A, "a1")
    clock.now += WINDOW + 1
    assert limiter.reserve(B, "a1") is None and limiter.retry_after(B, "a1") is None
