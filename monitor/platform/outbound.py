"""Outbound HTTP to addresses users give us (model endpoints, Slack webhooks), guarded against SSRF.

A URL is checked when it is registered and again at every connection: the address actually connected to is
the one checked, so a DNS name that later resolves elsewhere (rebinding) is still refused. Link-local
addresses (cloud metadata at 169.254.169.254), unspecified, multicast and reserved ranges are always refused;
loopback only where the settings allow it (by default only on a localhost-only install); private ranges are
allowed (models usually live inside the company network). OUTBOUND_ALLOWED_NETWORKS names exceptions.
Redirects are never followed and proxies from the environment are ignored.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundBlocked(OSError):
    """The destination is not allowed; retrying cannot help."""


def refusal(address: Address) -> str | None:
    """Why `address` may not be contacted, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in ipaddress.ip_network(net) for net in settings.OUTBOUND_ALLOWED_NETWORKS):
        return None
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_loopback:  # before "reserved": ::1 lies in IPv6's reserved ::/8
        return None if settings.OUTBOUND_ALLOW_LOOPBACK else "a loopback address (this server itself)"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "an unspecified, multicast or reserved address"
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared carrier-grade NAT address (some clouds serve metadata there)"
    if address.is_private and not settings.OUTBOUND_ALLOW_PRIVATE:
        return "a private-network address"
    return None


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
            raise OutboundBlocked(f"{host} resolves to {address}, {reason}; not allowed "
                                  "(see OUTBOUND_ALLOWED_NETWORKS)")
    return infos


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


def _guarded_create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                               source_address: Any = None) -> socket.socket:
    host, port = address
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"could not connect to {host}:{port}")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_create_connection


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_create_connection  # TLS still verifies the name in the URL


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would send our request to an address nobody checked: answer it as an HTTP error instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler(), _GuardedHTTPSHandler(),
                                       _NoRedirects())
