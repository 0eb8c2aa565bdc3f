"""Which addresses web search may fetch pages from: public ones only, unless allowed (SSRF guard).

An agent searching the open web fetches whatever URLs the search results name. A result (or a
redirect) pointing at ``http://127.0.0.1:…/``, ``http://10.…``, ``http://169.254.169.254/`` (cloud
metadata) or a host name that resolves to such an address would make the fetcher reach services
that only this machine's network can see, and hand their replies to the model. So, unless
``WebConfig.allow_private_urls`` (``R1SEARCHER_WEB_ALLOW_PRIVATE_URLS=1``) is set, a page fetch is
refused when its host is, or resolves to, a loopback, private, link-local, unspecified, multicast,
reserved or otherwise non-global address. It is checked three times:

1. :func:`check_host` without DNS before the page cache is read (literal addresses, ``localhost``);
2. :func:`guard_request`, an httpx request hook, on every request the client sends (redirect hops
   included, and through a proxy too), resolving the host name;
3. :class:`PublicOnlyBackend` at connect time on direct connections: it resolves the name once,
   refuses if any address is not public, and connects to the vetted address itself, so a DNS
   answer that changes between the check and the connection (DNS rebinding) cannot slip through.

The search API and the summariser are configured endpoints, not search results: they are not
checked (a self-hosted SearXNG on loopback keeps working).
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

ALLOW_HINT = "web search fetches public addresses only; allow_private_urls=True or R1SEARCHER_WEB_ALLOW_PRIVATE_URLS=1 allows it"
#: Starts the message of a connect-time refusal (httpx re-wraps the exception, the message stays).
BLOCKED_MARK = "blocked non-public address: "
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedURL(ValueError):
    """A URL whose host is not a public address (and private addresses are not allowed)."""


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address ("a loopback address", …), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for test, what in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                       ("is_unspecified", "an unspecified address"), ("is_multicast", "a multicast address"),
                       ("is_private", "a private address"), ("is_reserved", "a reserved address")):
        if getattr(ip, test):
            return what
    return None if ip.is_global else "not a public address"


def _resolve(host: str, port: int | None = None) -> list[str]:
    """The addresses ``host`` resolves to, in resolver order, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, resolve: bool = True) -> None:
    """Raise :class:`BlockedURL` when ``host`` is, or (with ``resolve``) resolves to, an address
    that is not public. A name that does not resolve passes: its fetch fails on its own."""
    name = host.strip().strip("[]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
    except ValueError:
        ip = None
    if ip is not None:
        problem = address_problem(ip)
        if problem:
            raise BlockedURL(f"{host} is {problem} ({ALLOW_HINT})")
        return
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        raise BlockedURL(f"{host} is a loopback address ({ALLOW_HINT})")
    if not resolve:
        return
    try:
        addresses = _resolve(name)
    except (OSError, UnicodeError):
        return
    for addr in addresses:
        problem = address_problem(ipaddress.ip_address(addr.split("%", 1)[0]))
        if problem:
            raise BlockedURL(f"{host} resolves to {addr}, {problem} ({ALLOW_HINT})")


def check_url(url: str, resolve: bool = True) -> None:
    """:func:`check_host` on ``url``'s host (a URL without one is left to the fetch to refuse)."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return
    if host:
        check_host(host, resolve)


def guard_request(request: httpx.Request) -> None:
    """httpx ``request`` event hook: runs for every request, each redirect hop included."""
    check_host(request.url.host, resolve=True)


class PublicOnlyBackend:
    """An httpcore network backend that connects only to public addresses: it resolves the host
    itself, refuses when any address is not public, and connects to the vetted address."""

    def __init__(self, inner) -> None:  # noqa: ANN001 - an httpcore.NetworkBackend
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None):  # noqa: ANN001, ANN201 - httpcore's signature
        import httpcore

        try:
            addresses = _resolve(host, port)
        except (OSError, UnicodeError) as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from None
        for addr in addresses:
            problem = address_problem(ipaddress.ip_address(addr.split("%", 1)[0]))
            if problem:
                raise httpcore.ConnectError(f"{BLOCKED_MARK}{host} resolves to {addr}, {problem} ({ALLOW_HINT})")
        last: Exception | None = None
        for addr in addresses:
            try:
                return self.inner.connect_tcp(addr, port, timeout=timeout, local_address=local_address,
                                              socket_options=socket_options)
            except httpcore.ConnectError as e:  # try the next address, as socket.create_connection does
                last = e
        assert last is not None
        raise last

    def connect_unix_socket(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return self.inner.connect_unix_socket(*args, **kwargs)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def public_only_transport(limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose direct connections go through :class:`PublicOnlyBackend`. (httpx
    has no public hook for the network backend: where its pool is not the expected httpcore one,
    the transport is returned as is and :func:`guard_request` alone guards the requests.)"""
    transport = httpx.HTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None:
        pool._network_backend = PublicOnlyBackend(backend)  # type: ignore[union-attr]
    return transport
