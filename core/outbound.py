"""Outbound HTTP for webhooks: Standard Webhooks signatures, and a POST that reaches only the
addresses it was allowed to.

A receiver's URL is the caller's choice, so a request to it must not become a way into the
server's own network (SSRF). A target must be `https` and every address its name resolves to
must be public (no loopback, private, shared, link-local, multicast or reserved address), unless
private targets are allowed (tests, closed networks). The name is resolved once per attempt
and the connection goes to the address that was checked (TLS still verifies the certificate
for the name), so a DNS answer that changes between the check and the connection (rebinding)
cannot redirect it. Redirects are not followed; a response is read up to a bound and dropped.

A sender may keep its connections open between attempts (`Clients`): a connection is reused
only for the same host name at the same checked address, so it never carries one receiver's
events to a server that proved another name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import errno
import functools
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from sessions_api.core.timestamps import utcnow

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32
# How long resolving a receiver's name may take before the attempt fails.
_RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL may not be a webhook target; the message says why, for people, naming no
    address (what a name resolves to is the server's network's business)."""


NOT_PUBLIC = "The URL's host is not (or does not resolve only to) public addresses; webhooks only go to public ones."


@dataclass(frozen=True)
class AttemptResult:
    """What one POST gave: the receiver's status, or why there was none."""

    response_status: int | None
    error: str | None
    duration_ms: int
    # A 429's or 503's `Retry-After`, in seconds (at most a day); None without one.
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300


def new_secret() -> str:
    """A signing secret in Standard Webhooks' form: `whsec_` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def signature_header(signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each secret,
    separated by spaces (several during a rotation's overlap)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in signing_secrets
    )


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


# IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and the RFCs that add to
# them), as (network, globally reachable): the most specific entry that holds an address
# decides. Entries the registries leave undecided (deprecated relays, ORCHID, Teredo) are not
# reachable for a webhook; nor are multicast and, in IPv6, anything outside global unicast.
_SPECIAL_PURPOSE: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bool], ...] = tuple(
    (ipaddress.ip_network(network), reachable)
    for network, reachable in (
        ("0.0.0.0/8", False),  # "this network"
        ("10.0.0.0/8", False),  # private
        ("100.64.0.0/10", False),  # shared address space
        ("127.0.0.0/8", False),  # loopback
        ("169.254.0.0/16", False),  # link local
        ("172.16.0.0/12", False),  # private
        ("192.0.0.0/24", False),  # IETF protocol assignments (192.0.0.8: dummy address)
        ("192.0.0.9/32", True),  # port control protocol anycast
        ("192.0.0.10/32", True),  # TURN anycast
        ("192.0.2.0/24", False),  # documentation
        ("192.31.196.0/24", True),  # AS112-v4
        ("192.52.193.0/24", True),  # AMT
        ("192.88.99.0/24", False),  # deprecated 6to4 relay anycast
        ("192.168.0.0/16", False),  # private
        ("192.175.48.0/24", True),  # direct delegation AS112
        ("198.18.0.0/15", False),  # benchmarking
        ("198.51.100.0/24", False),  # documentation
        ("203.0.113.0/24", False),  # documentation
        ("224.0.0.0/4", False),  # multicast
        ("240.0.0.0/4", False),  # reserved, and the limited broadcast address
        ("::/128", False),  # unspecified
        ("::1/128", False),  # loopback
        ("100::/64", False),  # discard-only
        ("100:0:0:1::/64", False),  # dummy prefix
        ("2001::/23", False),  # IETF protocol assignments (2001::/32: Teredo)
        ("2001:1::1/128", True),  # port control protocol anycast
        ("2001:1::2/128", True),  # TURN anycast
        ("2001:1::3/128", True),  # DNS-SD service registration protocol anycast
        ("2001:2::/48", False),  # benchmarking
        ("2001:3::/32", True),  # AMT
        ("2001:4:112::/48", True),  # AS112-v6
        ("2001:10::/28", False),  # deprecated ORCHID
        ("2001:20::/28", True),  # ORCHIDv2
        ("2001:30::/28", True),  # drone remote ID
        ("2001:db8::/32", False),  # documentation
        ("2620:4f:8000::/48", True),  # direct delegation AS112
        ("3fff::/20", False),  # documentation
        ("5f00::/16", False),  # segment routing (SRv6) SIDs
        ("64:ff9b:1::/48", False),  # local-use IPv4/IPv6 translation
        ("fc00::/7", False),  # unique local
        ("fe80::/10", False),  # link-local unicast
        ("fec0::/10", False),  # deprecated site-local, still routed on some networks
        ("ff00::/8", False),  # multicast
    )
)
_GLOBAL_UNICAST_IPV6 = ipaddress.ip_network("2000::/3")
# IPv6 ranges that carry an IPv4 address the packet reaches, judged by that address: mapped
# (::ffff:0:0/96), translated (::ffff:0:0:0/96, RFC 2765), IPv4-compatible (::/96, RFC 4291)
# and the NAT64 well-known prefix (64:ff9b::/96, RFC 6052) in their last 32 bits; 6to4
# (2002::/16, RFC 3056) in the 32 bits after its prefix.
_LAST_32_BITS_IPV4 = tuple(
    ipaddress.ip_network(network) for network in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
)
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches, in every form that embeds one."""
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    if any(address in network for network in _LAST_32_BITS_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally reachable as IANA's special-purpose registries say (the most specific entry
    decides; an address in none is reachable, in IPv6 only within global unicast). An IPv6
    address that carries an IPv4 one is judged by the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    holding = [(network, reachable) for network, reachable in _SPECIAL_PURPOSE if address in network]
    if holding:
        return max(holding, key=lambda entry: entry[0].prefixlen)[1]
    return isinstance(address, ipaddress.IPv4Address) or address in _GLOBAL_UNICAST_IPV6


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what the Host header and TLS name, and where to connect."""

    url: httpx.URL
    host: str
    port: int


def parse_target(url: str, *, allow_private: bool, allowed_ports: frozenset[int] = frozenset()) -> Target:
    """The URL as a target, refused (UnsafeTarget) for a scheme other than https (http too
    when private targets are allowed), a missing host, an address literal that is not public,
    or a port outside `allowed_ports` (when there are any)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"The URL is not valid ({exc}).") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise UnsafeTarget("A webhook URL must use https.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeTarget("A webhook URL must name a host.")
    literal = _address(host)
    if literal is not None and not allow_private and not is_public(literal):
        raise UnsafeTarget(NOT_PUBLIC)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"The URL is not valid ({exc}).") from None
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if allowed_ports and port not in allowed_ports:
        shown = ", ".join(str(allowed) for allowed in sorted(allowed_ports))
        raise UnsafeTarget(f"Webhooks only go to the ports this server allows ({shown}).")
    return Target(parsed, host, port)


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target, *, allow_private: bool) -> list[IPAddress]:
    """Every address the target's host resolves to, all of them public (else UnsafeTarget);
    OSError when the name does not resolve."""
    literal = _address(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not allow_private and not all(is_public(address) for address in addresses):
        raise UnsafeTarget(NOT_PUBLIC)
    return addresses


class Reason:
    """Why an attempt did not succeed, as the attempts log records it: a code, never an address
    or the operating system's words (they would map the server's network for whoever reads it)."""

    TIMEOUT = "timeout"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_FAILED = "connection_failed"
    TLS_ERROR = "tls_error"
    UNSAFE_TARGET = "unsafe_target"
    INVALID_RESPONSE = "invalid_response"
    HTTP_STATUS = "http_status"
    TOO_LARGE = "too_large"
    # Not the receiver's doing: this server cannot unseal the endpoint's signing secret.
    SECRET_UNREADABLE = "secret_unreadable"
    # Nor this: the event left the log (its retention) before it could be delivered; no retry.
    EVENT_EXPIRED = "event_expired"


async def post(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    timeout: float,
    max_response_bytes: int,
    allow_private: bool,
    allowed_ports: frozenset[int] = frozenset(),
    clients: Clients | None = None,
) -> AttemptResult:
    """POST `body` to `url` once, within `timeout` seconds in all (resolving included), to an
    address checked as above; never raises for what the receiver or the network does. A failed
    attempt's error is a `Reason`. With `clients`, an open connection to the same name at the
    same address is reused; without, the attempt connects and closes."""
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    try:
        async with asyncio.timeout(timeout):
            target = parse_target(url, allow_private=allow_private, allowed_ports=allowed_ports)
            addresses = await resolve(target, allow_private=allow_private)
            request = _request(target, addresses[0], headers, body, timeout)
            if clients is None:
                async with _new_client(timeout) as client:
                    status, oversized, retry_after = await _send(client, request, max_response_bytes)
            else:
                key = (target.url.scheme, str(addresses[0]), target.port, target.host)
                async with clients.use(key, timeout) as client:
                    status, oversized, retry_after = await _send(client, request, max_response_bytes)
        if not 200 <= status < 300:
            error = Reason.TOO_LARGE if oversized else Reason.HTTP_STATUS
    except Exception as exc:  # what the receiver or the network did, as a reason code
        error = _reason(exc)
        if error is None:
            raise
    duration_ms = round((time.monotonic() - started) * 1000)
    return AttemptResult(status, error, duration_ms, retry_after)


def _reason(exc: BaseException) -> str | None:
    """The reason code of an attempt's failure; None for an error of ours (raised on)."""
    chain = list(_chain(exc))
    if any(isinstance(link, TimeoutError | httpx.TimeoutException) for link in chain):
        return Reason.TIMEOUT
    if isinstance(exc, UnsafeTarget):
        return Reason.UNSAFE_TARGET
    if any(isinstance(link, socket.gaierror | UnicodeError) for link in chain):
        return Reason.DNS_FAILURE
    if any(isinstance(link, ssl.SSLError) for link in chain):
        return Reason.TLS_ERROR
    if any(
        isinstance(link, ConnectionRefusedError) or getattr(link, "errno", None) == errno.ECONNREFUSED for link in chain
    ):
        return Reason.CONNECTION_REFUSED
    if isinstance(exc, httpx.ConnectError | httpx.NetworkError | OSError):
        return Reason.CONNECTION_FAILED
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL | ValueError):
        return Reason.INVALID_RESPONSE
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from, as deep as it goes (bounded)."""
    link: BaseException | None = exc
    for _ in range(10):
        if link is None:
            return
        yield link
        link = link.__cause__ or link.__context__


def _request(
    target: Target, address: IPAddress, headers: Mapping[str, str], body: bytes, timeout: float
) -> httpx.Request:
    """The POST to `address`, naming the target's host in Host and TLS."""
    netloc_host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.url.scheme == "https" else 80
    host_header = netloc_host if target.port == default_port else f"{netloc_host}:{target.port}"
    return httpx.Request(
        "POST",
        target.url.copy_with(host=str(address)),
        headers={**headers, "Host": host_header},
        content=body,
        extensions={"sni_hostname": target.host, "timeout": httpx.Timeout(timeout).as_dict()},
    )


def _new_client(timeout: float, connections: int | None = None) -> httpx.AsyncClient:
    # No proxy from the environment (it would connect elsewhere), no redirects, TLS verified
    # for the name (the request's `sni_hostname`).
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        verify=_tls_context(), trust_env=False, follow_redirects=False, timeout=timeout, limits=limits
    )


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, max_response_bytes: int
) -> tuple[int, bool, float | None]:
    """Send; read at most `max_response_bytes` of the answer, and return its status, whether
    it had more, and the wait a 429 or 503 asked for."""
    response = await client.send(request, stream=True)
    received, oversized = 0, False
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > max_response_bytes:
                oversized = True
                break
    finally:
        await response.aclose()
    asked = response.headers.get("retry-after") if response.status_code in (429, 503) else None
    return response.status_code, oversized, retry_after_seconds(asked)


# The longest Retry-After honoured: a receiver cannot park an endpoint for longer.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110's Retry-After, delay-seconds or an HTTP-date, as seconds from now (0 to a day);
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - (now or utcnow())).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


# Connections one client's pool holds: httpcore looks over every connection of a pool, and
# for each idle one over all of them again, at each request; pools this small keep that cheap
# at any number of attempts at once (a slice of a busy endpoint per pool).
_CONNECTIONS_PER_CLIENT = 8


class Clients:
    """A sender's open HTTP clients, per (scheme, checked address, port, host name): as many
    as the attempts at once to that key need, `_CONNECTIONS_PER_CLIENT` each. Each client's
    pool only ever connects to its key's address and serves only its key's name. Beyond
    `limit` clients, the least recently used idle ones are closed."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._clients: OrderedDict[tuple[tuple[str, str, int, str], int], httpx.AsyncClient] = OrderedDict()
        self._in_use: dict[tuple[tuple[str, str, int, str], int], int] = {}

    @contextlib.asynccontextmanager
    async def use(self, key: tuple[str, str, int, str], timeout: float) -> AsyncIterator[httpx.AsyncClient]:
        slot = self._free_slot(key)
        client = self._clients.pop(slot, None) or _new_client(timeout, _CONNECTIONS_PER_CLIENT)
        self._clients[slot] = client
        self._in_use[slot] = self._in_use.get(slot, 0) + 1
        try:
            yield client
        finally:
            left = self._in_use.pop(slot) - 1
            if left:
                self._in_use[slot] = left
            await self._close_idle_beyond_limit()

    def _free_slot(self, key: tuple[str, str, int, str]) -> tuple[tuple[str, str, int, str], int]:
        """The first of the key's clients with a connection to spare (a new one past them)."""
        index = 0
        while self._in_use.get((key, index), 0) >= _CONNECTIONS_PER_CLIENT:
            index += 1
        return key, index

    async def _close_idle_beyond_limit(self) -> None:
        idle = [slot for slot in self._clients if slot not in self._in_use]
        for slot in idle[: max(0, len(self._clients) - self._limit)]:
            await self._clients.pop(slot).aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs milliseconds of CPU."""
    return httpx.create_ssl_context()
