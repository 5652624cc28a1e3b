"""Outbound HTTP for webhooks: Standard Webhooks signatures, and a POST that reaches only the
addresses it was allowed to.

A receiver's URL is the caller's choice, so a request to it must not become a way into the
server's own network (SSRF). A target must be `https` and every address its name resolves to
must be public (no loopback, private, shared, link-local, multicast or reserved address), unless
private targets are allowed (tests, closed networks). The name is resolved once per attempt
and the connection goes to the address that was checked (TLS still verifies the certificate
for the name), so a DNS answer that changes between the check and the connection (rebinding)
cannot redirect it. Redirects are not followed; a response is read up to a bound and dropped.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32
# How long resolving a receiver's name may take before the attempt fails.
_RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL may not be a webhook target; the message says why, for people."""


@dataclass(frozen=True)
class AttemptResult:
    """What one POST gave: the receiver's status, or why there was none."""

    response_status: int | None
    error: str | None
    duration_ms: int

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


def is_public(address: IPAddress) -> bool:
    """Reachable on the public internet: not loopback, private, shared, link-local, reserved or
    unspecified (`is_global` says that), and not multicast (which `is_global` lets through)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what the Host header and TLS name, and where to connect."""

    url: httpx.URL
    host: str
    port: int


def parse_target(url: str, *, allow_private: bool) -> Target:
    """The URL as a target, refused (UnsafeTarget) for a scheme other than https (http too
    when private targets are allowed), a missing host, or an address literal that is not public."""
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
        raise UnsafeTarget(f"The address {literal} is not a public one; webhooks only go to public addresses.")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"The URL is not valid ({exc}).") from None
    return Target(parsed, host, port or (443 if parts.scheme.lower() == "https" else 80))


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
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UnsafeTarget(f"{target.host} resolves to {address}, which is not a public address.")
    return addresses


async def post(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    timeout: float,
    max_response_bytes: int,
    allow_private: bool,
) -> AttemptResult:
    """POST `body` to `url` once, within `timeout` seconds in all (resolving included), to an
    address checked as above; never raises for what the receiver or the network does."""
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout):
            target = parse_target(url, allow_private=allow_private)
            addresses = await resolve(target, allow_private=allow_private)
            status = await _post_to(target, addresses[0], headers, body, timeout, max_response_bytes)
    except TimeoutError:
        error = f"No answer within {timeout:g} s."
    except UnsafeTarget as exc:
        error = str(exc)
    except (OSError, ValueError, httpx.HTTPError, httpx.InvalidURL) as exc:  # the network, the name, the answer
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = round((time.monotonic() - started) * 1000)
    return AttemptResult(status, error[:300] if error else None, duration_ms)


async def _post_to(
    target: Target,
    address: IPAddress,
    headers: Mapping[str, str],
    body: bytes,
    timeout: float,
    max_response_bytes: int,
) -> int:
    """POST to `address`, naming the target's host in Host and TLS; reads at most
    `max_response_bytes` of the answer, and returns its status."""
    netloc_host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.url.scheme == "https" else 80
    host_header = netloc_host if target.port == default_port else f"{netloc_host}:{target.port}"
    # No proxy from the environment (it would connect elsewhere), no redirects, no reuse (each
    # attempt connects to the address it checked), TLS verified for the name.
    async with httpx.AsyncClient(
        verify=_tls_context(), trust_env=False, follow_redirects=False, timeout=timeout
    ) as client:
        request = client.build_request(
            "POST",
            target.url.copy_with(host=str(address)),
            headers={**headers, "Host": host_header},
            content=body,
            extensions={"sni_hostname": target.host},
        )
        response = await client.send(request, stream=True)
        try:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= max_response_bytes:
                    break
        finally:
            await response.aclose()
        return response.status_code


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs milliseconds of CPU."""
    return httpx.create_ssl_context()
