"""Failed-login limiting that an attacker cannot turn against other users, and the client
address it keys on.

A :class:`LoginLimiter` counts failed logins over a sliding window of ``window_seconds``,
per (client address, user name) and per user name. Before a password is verified the caller
takes a place with :meth:`LoginLimiter.reserve`; an attempt being verified counts as a
failure until it ends, so guesses sent all at once get no more tries than guesses sent one
after another. The attempt is refused (429, not verified, not counted) when

1. this address has failed ``max_failures`` times as this name in the window; or
2. this name has failed ``max_failures`` times in the window from any addresses, unless
   this address logged in successfully as this name within ``remember_seconds`` (a client
   the user is known to use).

Otherwise the password is verified and the caller reports :meth:`~LoginLimiter.failed` or
:meth:`~LoginLimiter.succeeded`, and then :meth:`~LoginLimiter.release` in every case.

A correct password is therefore refused only because of failures for that same name: from
this address (1), or from anywhere while the address is not one the user has logged in
from lately (2). Failures for other names, from this address or any other, never count
against it: a spray of made-up names cannot lock out a user, or everyone behind the reverse
proxy they share one address with.

It still stops guessing:

- one user's password from many addresses: each failure counts on the name, so after
  ``max_failures`` the name is closed to every address but the user's known ones, each of
  which is held by its own count (1). At most ``max_failures x (1 + known addresses)``
  guesses per window.
- many passwords from one address: for one name, (1) stops it after ``max_failures``. For
  many names (a spray), each name still gets at most ``max_failures`` guesses per window in
  all (2), which is the bound that protects an account. There is no per-address cap: behind
  a proxy one address is everybody, and such a cap is what let twelve random names lock out
  every user. ``--auth-trusted-proxies`` (:func:`client_address`) gives back real addresses.

Names are counted whether or not the user exists, so a 429 reveals nothing about which names
exist. A success erases no failures (they expire with the window): otherwise someone sharing
the user's address would get a fresh allowance each time the user's client logs in again.
This bounds guessing, not load: each attempt still costs a password hash, and a request rate
limit belongs in the reverse proxy. Memory is bounded: a counter keeps at most
``max_failures`` times, and at ``max_entries`` counters (or known clients) the expired go
first, then the least recently failed; evicting a name's counter takes ``max_entries``
failures for other names since its last one.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, NamedTuple, TypeVar

__all__ = ["LoginLimiter", "Network", "client_address", "parse_trusted_proxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_K = TypeVar("_K", bound=Hashable)


class _Pair(NamedTuple):
    address: str
    username: str


# Retry-After for an attempt refused only because others like it are being verified.
_PENDING_WAIT = 1.0


class _Failures(Generic[_K]):
    """The last ``limit`` failure times per key, least recently failed key first."""

    def __init__(self, limit: int, window: float, max_entries: int) -> None:
        self._limit, self._window, self._max_entries = limit, window, max_entries
        self._times: OrderedDict[_K, deque[float]] = OrderedDict()

    def __contains__(self, key: _K) -> bool:
        return key in self._times

    def wait(self, key: _K, now: float, pending: int = 0) -> float | None:
        """Seconds until ``key`` has fewer than ``limit`` failures in the window, counting
        ``pending`` attempts still being verified as failures, or None."""
        live = [t for t in self._times.get(key, ()) if t > now - self._window]
        if len(live) + pending < self._limit:
            return None
        if pending >= self._limit:
            return _PENDING_WAIT
        # Failures leave the window oldest first; this one must go before another try.
        return live[len(live) + pending - self._limit] + self._window - now

    def add(self, key: _K, now: float) -> None:
        times = self._times.pop(key, None)
        if times is None:
            times = deque(maxlen=self._limit)
        times.append(now)
        self._times[key] = times
        while self._times:
            oldest = next(iter(self._times.values()))
            if oldest[-1] > now - self._window and len(self._times) <= self._max_entries:
                break
            self._times.popitem(last=False)


class LoginLimiter:
    """Failed logins per (address, user name) and per user name; see the module docstring
    for the rule. Not thread-safe (one per event loop); ``clock`` is monotonic seconds."""

    def __init__(self, max_failures: int, window_seconds: float, *,
                 remember_seconds: float = 7 * 86400, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_failures < 1 or window_seconds <= 0 or remember_seconds < 0 or max_entries < 1:
            raise ValueError("max_failures, window_seconds and max_entries must be positive")
        self._by_pair: _Failures[_Pair] = _Failures(max_failures, window_seconds, max_entries)
        self._by_name: _Failures[str] = _Failures(max_failures, window_seconds, max_entries)
        self._known: OrderedDict[_Pair, float] = OrderedDict()  # last success of a pair
        self._pending_pairs: Counter[_Pair] = Counter()  # attempts being verified
        self._pending_names: Counter[str] = Counter()
        self._remember, self._max_entries, self._clock = remember_seconds, max_entries, clock

    def retry_after(self, address: str, username: str, *, by_name: bool = True) -> int | None:
        """None when an attempt may be verified now, else the whole seconds (at least 1) to
        put in ``Retry-After``; attempts being verified count as failures. ``by_name=False``
        applies rule 1 only: for a secret no one can guess (a token's), where closing the
        name to every address would only let anyone who knows the name lock its holder out."""
        pair = _Pair(address, username)
        pending_pair, pending_name = self._pending_pairs[pair], self._pending_names[username]
        if not pending_name and username not in self._by_name and pair not in self._by_pair:
            return None  # the usual case: no recent failure for this name
        now = self._clock()
        waits = [self._by_pair.wait(pair, now, pending_pair)]
        if by_name and not self._is_known(pair, now):
            waits.append(self._by_name.wait(username, now, pending_name))
        longest = max((w for w in waits if w is not None), default=None)
        return None if longest is None else max(1, math.ceil(longest))

    def reserve(self, address: str, username: str, *, by_name: bool = True) -> int | None:
        """Ask before verifying a password: None to go ahead (the attempt now counts as a
        failure until :meth:`release`), else :meth:`retry_after`'s seconds. A refused
        attempt is not reported back and holds nothing."""
        wait = self.retry_after(address, username, by_name=by_name)
        if wait is None:
            self._pending_pairs[_Pair(address, username)] += 1
            self._pending_names[username] += 1
        return wait

    def release(self, address: str, username: str) -> None:
        """The attempt :meth:`reserve` let through has ended (reported or not)."""
        pair = _Pair(address, username)
        self._pending_pairs[pair] -= 1
        if self._pending_pairs[pair] <= 0:
            del self._pending_pairs[pair]
        self._pending_names[username] -= 1
        if self._pending_names[username] <= 0:
            del self._pending_names[username]

    def failed(self, address: str, username: str) -> None:
        """A verified attempt failed: a wrong password or an unknown name."""
        now = self._clock()
        self._by_pair.add(_Pair(address, username), now)
        self._by_name.add(username, now)

    def succeeded(self, address: str, username: str) -> None:
        """A verified attempt succeeded: ``address`` becomes a known client of ``username``
        for ``remember_seconds``. Failures stay counted until they leave the window."""
        now = self._clock()
        pair = _Pair(address, username)
        self._known.pop(pair, None)
        self._known[pair] = now
        while self._known:
            oldest = next(iter(self._known.values()))
            if oldest > now - self._remember and len(self._known) <= self._max_entries:
                break
            self._known.popitem(last=False)

    def _is_known(self, pair: _Pair, now: float) -> bool:
        last = self._known.get(pair)
        return last is not None and last > now - self._remember


def parse_trusted_proxies(spec: str | Iterable[str]) -> tuple[Network, ...]:
    """IP addresses and CIDR networks, comma- or space-separated (``"10.0.0.0/8, ::1"``).
    Raises ValueError naming the entry that is neither."""
    items = spec.replace(",", " ").split() if isinstance(spec, str) else spec
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted_proxies: Sequence[Network]) -> str:
    """The address a request came from. ``peer`` is the socket's remote address;
    ``forwarded_for`` every ``X-Forwarded-For`` value joined with commas (a client may send
    its own header line before the proxy's). The header is honoured only when the peer is
    one of ``trusted_proxies``; then the answer is its right-most address that is not itself
    trusted (each proxy appends the address it saw, so entries left of that are the
    client's to invent). When every entry is trusted: the left-most. An entry that is not an
    address ends the walk at the trusted hop to its right. Addresses are canonical
    (``::ffff:10.0.0.1`` is ``10.0.0.1``); an unparseable peer is returned as given, and
    None as ``""``."""
    hop = _parse_ip(peer)
    if hop is None:
        return peer or ""
    if not forwarded_for or not _trusted(hop, trusted_proxies):
        return str(hop)
    for entry in reversed(forwarded_for.split(",")):
        ip = _parse_ip(entry)
        if ip is None:
            break
        hop = ip
        if not _trusted(ip, trusted_proxies):
            break
    return str(hop)


def _trusted(ip: _Address, trusted_proxies: Sequence[Network]) -> bool:
    return any(ip in network for network in trusted_proxies)


def _parse_ip(text: str | None) -> _Address | None:
    """An address as proxies write it: bare, ``[v6]``, with or without ``:port``."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
