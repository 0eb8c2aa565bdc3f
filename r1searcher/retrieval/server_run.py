"""Running an ASGI app the way ``r1searcher serve`` does: uvicorn with a deadline for each request's
headers (which uvicorn lacks), keep-alive and no access log, on a socket bound first so that the URL
actually listened on (port 0: a free one) can be announced before the first request."""

from __future__ import annotations

import socket
from collections.abc import Callable

from r1searcher.retrieval.server_limits import ServerLimits


def _header_timeout_protocol(header_timeout_s: float):
    """uvicorn's HTTP protocol (httptools when installed, else h11, as its "auto" picks) with a
    deadline for each request's headers: uvicorn has none, so a client that sends part of a request
    line or header block and stops would hold its connection forever. The timer starts when the
    connection opens and when the first bytes of a next request arrive (not again for its later
    bytes, so trickling does not extend it); if no new request's headers were completed when it
    fires, the connection is closed. An idle keep-alive connection is left to ``keep_alive_s``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools is normally installed (uvicorn[standard])
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _r1s_timer = None
        _r1s_cycle = None

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            self._r1s_arm()

        def data_received(self, data: bytes) -> None:
            if (self.cycle is None or self.cycle.response_complete) and not (
                    self._r1s_timer is not None and self._r1s_cycle is self.cycle):
                self._r1s_arm()  # the first bytes of a next request: its headers get header_timeout_s
            super().data_received(data)

        def connection_lost(self, exc) -> None:  # noqa: ANN001
            if self._r1s_timer is not None:
                self._r1s_timer.cancel()
                self._r1s_timer = None
            super().connection_lost(exc)

        def _r1s_arm(self) -> None:
            if self._r1s_timer is not None:
                self._r1s_timer.cancel()
            self._r1s_cycle = self.cycle
            self._r1s_timer = self.loop.call_later(header_timeout_s, self._r1s_expire)

        def _r1s_expire(self) -> None:
            self._r1s_timer = None
            if self.cycle is self._r1s_cycle and not self.transport.is_closing():
                self.transport.close()  # no request's headers were completed since the timer started

    return HeaderTimeoutProtocol


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
                   log_level: str = "warning"):
    """The ``uvicorn.Config`` that :func:`serve` runs ``app`` under: header and keep-alive
    timeouts from ``limits``; no access log, so no proxy-header rewriting of the client address
    either, and no ``server`` header (per-request work that nothing here reads)."""
    import uvicorn

    lim = limits or ServerLimits()
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=False,
                          server_header=False, timeout_keep_alive=lim.keep_alive_s,
                          http=_header_timeout_protocol(lim.header_timeout_s))


def check_port(port: int) -> int:
    """``port`` if it is a TCP port number (0 = any free port), else a ValueError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535 (0: any free port), got {port!r}")
    return port


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (``host``, ``port``); port 0 picks a free one (read it with
    ``getsockname()``). An OSError naming the address when it cannot be had."""
    check_port(port)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_app(app, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
            log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Run an ASGI ``app`` under uvicorn (:func:`uvicorn_config`: header and keep-alive timeouts;
    httptools and uvloop when installed) until interrupted. The socket is bound first, so
    ``announce`` gets the URL actually listened on (port 0: a free port) before the first request
    can arrive."""
    import uvicorn

    sock = bind_socket(host, port)
    config = uvicorn_config(app, host, sock.getsockname()[1], limits, log_level)
    if announce is not None:
        announce(socket_url(sock))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
