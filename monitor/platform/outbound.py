"""Outbound HTTP to addresses users give us (model endpoints, Slack and other webhooks), guarded against SSRF.

A URL is checked when it is registered and again at every connection: the address actually connected to is
the one checked, so a DNS name that later resolves elsewhere (rebinding) is still refused. Cloud metadata
addresses, the rest of link-local, unspecified and multicast are always refused, even inside an allowed network;
loopback only where the settings allow it (by default only on a localhost-only install); private ranges (10/8,
172.16/12, 192.168/16, fc00::/7, 100.64/10, ...) only inside OUTBOUND_ALLOWED_NETWORKS. Redirects are never
followed and proxies from the environment are ignored.

A request's timeout is one deadline for all of it: connecting, the TLS handshake, sending and every read of the
answer, so a receiver that drips its answer a byte at a time is cut off when it passes (a per-read timeout would
wait for ever). `post` never reads the receiver's reply body: a notification needs only the status, and a body
shown to an admin would turn a webhook into a way to read internal services.
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import math
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, NoReturn
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: AWS, GCP, Azure and Oracle at 169.254.169.254 (inside link-local, refused anyway),
# AWS's IPv6 one at fd00:ec2::254 (inside fc00::/7, which an allow-list might name), Alibaba's at 100.100.100.200
# (inside 100.64/10), Oracle Cloud Classic's at 192.0.0.192.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")


class OutboundBlocked(OSError):
    """The destination is not allowed; retrying cannot help."""


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4), which is where a
    connection to it ends up."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def never_allowed(address: Address) -> str | None:
    """Why `address` is refused whatever the settings say, or None."""
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    return None


def refusal(address: Address) -> str | None:
    """Why `address` may not be contacted, or None."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = refusal(inner)
        return f"{reason}, {inner} in IPv6 form" if reason else None
    reason = never_allowed(address)
    if reason:
        return reason
    if any(address in network for network in allowed_networks(tuple(settings.OUTBOUND_ALLOWED_NETWORKS))):
        return None
    if address.is_loopback:  # before "reserved": ::1 lies in IPv6's reserved ::/8
        return None if settings.OUTBOUND_ALLOW_LOOPBACK else "a loopback address (this server itself)"
    if address.is_reserved:
        return "a reserved address"
    if address in CARRIER_GRADE_NAT:
        return "a shared carrier-grade NAT address (some clouds serve metadata there)"
    if not address.is_global:
        return "a private-network address"
    return None


@functools.lru_cache(maxsize=8)
def allowed_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry) for entry in entries)


def parse_allowed_networks(raw: str) -> list[str]:
    """OUTBOUND_ALLOWED_NETWORKS: comma-separated CIDRs, or ValueError naming the bad entry. Host bits must be zero
    (10.0.0.1/8 is a typo for something), and a network that starts and ends where nothing is ever allowed (a
    link-local or metadata range) is refused: it could never take effect."""
    if not raw.strip():
        return []
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            raise ValueError(f"an empty entry in {raw!r}: separate CIDRs with single commas")
        try:
            network = ipaddress.ip_network(entry)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a network in CIDR notation (e.g. 10.20.0.0/16): {exc}") from exc
        reason = never_allowed(network.network_address)
        if reason and never_allowed(network.broadcast_address):
            raise ValueError(f"{entry} is {reason}, which is never allowed")
        networks.append(str(network))
    return networks


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo results for host, all of them allowed, or OutboundBlocked naming the first refused one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundBlocked(f"the host {host!r} could not be resolved: {exc.strerror}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        reason = refusal(address)
        if reason:
            raise OutboundBlocked(f"{host} resolves to {address}, {reason}; not allowed"
                                  f"{advice(address)}")
    return infos


def advice(address: Address) -> str:
    """What an admin can do about a refusal, if anything."""
    if never_allowed(embedded_ipv4(address) or address):
        return ""
    return " (an administrator can allow its network in OUTBOUND_ALLOWED_NETWORKS)"


def check_url(url: str) -> None:
    """Raise OutboundBlocked (or ValueError for a malformed URL) before a URL is stored."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"the URL's port is not valid: {exc}") from exc
    try:
        resolve(parts.hostname, port)
    except OutboundBlocked as exc:
        # A name that does not resolve yet (offline install, DNS not set up) is accepted: every connection
        # checks again, and that check is the one that counts.
        if not isinstance(exc.__cause__, socket.gaierror):
            raise


# --- one deadline per request --------------------------------------------------------------------------------

class DeadlineMixin:
    """A socket that waits, in all, until its deadline: each wait gets only the time left. CPython bounds one
    blocking call by the socket timeout (sendall and a TLS handshake as a whole), so arming before each call
    bounds the sum of them."""

    deadline = math.inf  # until a connection sets one: as a plain socket
    total_timeout = 0.0

    def _arm(self) -> None:
        if self.deadline == math.inf:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out: no complete answer within {self.total_timeout:g} s")
        self.settimeout(left)  # type: ignore[attr-defined]

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)  # type: ignore[misc]

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)  # type: ignore[misc]

    def send(self, *args: Any) -> int:
        self._arm()
        return super().send(*args)  # type: ignore[misc]

    def sendall(self, *args: Any) -> None:
        self._arm()
        return super().sendall(*args)  # type: ignore[misc]


class DeadlineSocket(DeadlineMixin, socket.socket):
    pass


class DeadlineSSLSocket(DeadlineMixin, ssl.SSLSocket):
    pass


def _guarded_create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                               source_address: Any = None, *, deadline: float = math.inf) -> socket.socket:
    host, port = address
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve(host, port):
        sock = DeadlineSocket(family, kind, proto)
        sock.deadline, sock.total_timeout = deadline, timeout if deadline != math.inf else 0.0
        try:
            if source_address:
                sock.bind(source_address)
            sock._arm()
            sock.connect(sockaddr)
            sock._arm()  # what a TLS handshake gets: the time left
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"could not connect to {host}:{port}")


def _deadline(timeout: Any) -> float:
    return time.monotonic() + timeout if isinstance(timeout, (int, float)) else math.inf


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self._create_connection = functools.partial(_guarded_create_connection, deadline=_deadline(self.timeout))
        super().connect()


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context.sslsocket_class = DeadlineSSLSocket  # type: ignore[attr-defined]

    def connect(self) -> None:
        deadline = _deadline(self.timeout)
        self._create_connection = functools.partial(_guarded_create_connection, deadline=deadline)
        super().connect()  # TLS still verifies the name in the URL
        self.sock.deadline, self.sock.total_timeout = deadline, self.timeout  # type: ignore[union-attr]


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        try:
            return self.do_open(_GuardedHTTPConnection, req)
        except urllib.error.URLError as exc:
            # urllib wraps what fails while sending in URLError; a refusal stays a refusal for the callers.
            if isinstance(exc.reason, OutboundBlocked):
                raise exc.reason from None
            raise


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        try:
            return self.do_open(_GuardedHTTPSConnection, req, context=self._context)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, OutboundBlocked):
                raise exc.reason from None
            raise


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would send our request to an address nobody checked: answer it as an HTTP error instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _StandardReasons(urllib.request.HTTPDefaultErrorHandler):
    """An HTTPError carries the standard phrase of its status, never the receiver's own words."""

    def http_error_default(self, req: urllib.request.Request, fp: Any, code: int, msg: str, hdrs: Any) -> NoReturn:
        raise urllib.error.HTTPError(req.full_url, code, status_phrase(code), hdrs, fp)


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "non-standard status"


def opener() -> urllib.request.OpenerDirector:
    """urllib through the guard. `open(request, timeout=t)` allows t seconds for the whole exchange, reading the
    answer included: a read after the deadline raises TimeoutError."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler(), _GuardedHTTPSHandler(),
                                       _NoRedirects(), _StandardReasons())


def post(url: str, *, body: bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]], timeout: float) -> int:
    """POST `body` through the guard within `timeout` seconds in all, and return the answer's status. Redirects
    come back as their 3xx status. The reply body is not read. Raises OutboundBlocked, TimeoutError or OSError."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("the address must be an http(s) URL")
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310  # http(s) only, checked above
                                     headers=dict(headers))
    try:
        with opener().open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):  # refused connection, timed out while sending: say so plainly
            raise exc.reason from None
        raise
