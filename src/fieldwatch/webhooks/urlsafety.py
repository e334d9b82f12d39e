"""Where a webhook may point: SSRF protection.

Only ``http``/``https`` URLs without credentials. The host name is resolved (on the
event loop's resolver, never blocking) and *every* address it resolves to must be a
global one: loopback, private (RFC 1918, unique local), link-local (including the
cloud metadata endpoint 169.254.169.254), multicast, unspecified, reserved and other
non-global ranges are refused, also when wrapped in an IPv4-mapped IPv6 address.

The check runs when a webhook is created or changed and again before every delivery
(DNS answers change). The delivery then connects to one of the addresses that were
checked, so a second, different DNS answer can not slip in between check and use.

``Settings.webhook_allow_private`` turns the address check off (scheme and syntax are
still checked), for installations whose receivers live on a private network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
DNS_TIMEOUT_S = 5.0
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: an IPv4 address inside


class UnsafeUrl(ValueError):
    """The URL may not be used as a webhook target. ``reason`` is shown to the user."""

    def __init__(self, reason: str, *, unresolvable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        #: The host did not resolve: at delivery time this may be temporary (retried).
        self.unresolvable = unresolvable


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``addresses``) and how to name the host."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def parse(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an acceptable URL, or ``UnsafeUrl``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrl("only http:// and https:// URLs are allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not allowed; receivers verify the signature")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` is not an acceptable destination, or None when it is global."""
    shown = str(address)
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address.teredo is not None:
            embedded = address.teredo[1]
        elif address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"{problem} (inside {shown})" if problem else None
    if address.is_unspecified:
        return f"{shown} is an unspecified address"
    if address.is_loopback:
        return f"{shown} is a loopback address"
    if address.is_link_local:
        return f"{shown} is a link-local address"
    if address.is_multicast:
        return f"{shown} is a multicast address"
    if address.is_reserved:
        return f"{shown} is a reserved address"
    if address.is_private:
        return f"{shown} is a private address"
    if not address.is_global:
        return f"{shown} is not a public (global) address"
    return None


async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """The addresses ``host`` resolves to, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
            DNS_TIMEOUT_S,
        )
    except (TimeoutError, OSError, UnicodeError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise UnsafeUrl(
            f"the host {host!r} does not resolve ({reason})", unresolvable=True
        ) from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # IPv6 link-local answers may carry a zone ("fe80::1%eth0").
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    if not out:
        raise UnsafeUrl(f"the host {host!r} does not resolve", unresolvable=True)
    return tuple(out)


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Parse and resolve ``url``; refuse it unless every address is global (or private
    addresses are allowed). Raises ``UnsafeUrl`` with a reason for the user."""
    scheme, host, port = parse(url)
    addresses = await resolve(host, port)
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                named = "" if host == str(address) else f"{host!r} resolves to "
                raise UnsafeUrl(
                    f"{named}{problem}; webhooks may only target public addresses unless "
                    "the installation allows private ones (FIELDWATCH_WEBHOOK_ALLOW_PRIVATE=true)"
                )
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
