"""Refuse provider URLs that point inside the network (SSRF protection).

A base URL is checked when a provider is saved (`check_url`, then
`check_resolved_host` when its host name resolves) and, because a host name may
resolve differently later, again at every call after resolution
(`check_resolved_host`). Internal addresses are loopback, private ranges,
link-local (including the cloud metadata address 169.254.169.254), CGNAT,
multicast, reserved and unspecified ones, their IPv6 forms, IPv6 forms that
embed an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64), and numeric
spellings that the C resolver accepts (`2130706433`,
`0x7f000001`, `0177.0.0.1`, `127.1`). An allowlist entry (`host` or
`host:port`) admits an address anyway, for local simulators and demos.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Host names that reach cloud metadata services or the machine itself.
INTERNAL_HOST_NAMES = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
INTERNAL_HOST_SUFFIXES = (".localhost", ".internal", ".local")


# IPv6 prefixes whose last 32 bits are an IPv4 address: IPv4-compatible
# (RFC 4291, deprecated), NAT64 well-known (RFC 6052) and local-use NAT64
# (RFC 8215). Python 3.11 counts the last two as global.
_IPV4_EMBEDDING_NETWORKS = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
# Characters a host name may contain once lowercased; anything else (percent
# escapes, non-ASCII dots, spaces) could be read differently by the HTTP client.
_HOST_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


# DNS limits (RFC 1035): a label has at most 63 octets, a name at most 253.
MAX_LABEL_LENGTH = 63
MAX_HOST_NAME_LENGTH = 253


class UnsafeUrlError(ValueError):
    """The URL is malformed or points at an address that is not allowed."""


class UnresolvableHostError(UnsafeUrlError):
    """The host name has no address right now (no DNS, or no such name)."""


@dataclass(frozen=True, slots=True)
class Allowlist:
    hosts: frozenset[str]
    host_ports: frozenset[tuple[str, int]]

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            host, port = _split_host_port(entry)
            if port is None:
                hosts.add(host)
            else:
                host_ports.add((host, port))
        return cls(frozenset(hosts), frozenset(host_ports))

    def admits(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self.hosts or (host, port) in self.host_ports


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address a host literal stands for, in any spelling, or None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(part and _is_number(part) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_number(part: str) -> bool:
    lowered = part.lower()
    if lowered.startswith("0x"):
        return all(char in "0123456789abcdef" for char in lowered[2:])
    return part.isdigit()


def is_internal_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_internal_address(embedded)
    return not address.is_global or address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    # `::` and `::1` are IPv6's own unspecified and loopback addresses.
    if int(address) <= 1:
        return None
    if any(address in network for network in _IPV4_EMBEDDING_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def check_url(url: str, allowlist: Allowlist) -> None:
    """Check a URL before it is stored; raise `UnsafeUrlError` with the reason.

    A host name that is not an address literal passes here unless it is a
    well-known internal name; `check_resolved_host` checks its addresses.
    """
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in url):
        # Whitespace and control characters (CR and LF above all) could split
        # a request line or header when the URL is used.
        raise UnsafeUrlError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrlError(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("must be an absolute http or https URL")
    if not parts.hostname:
        raise UnsafeUrlError("must name a host")
    if parts.username or parts.password:
        raise UnsafeUrlError("must not contain credentials")

    host = parts.hostname.lower().rstrip(".")
    port = port or default_port(parts.scheme)
    if allowlist.admits(host, port):
        return
    address = parse_ip_literal(host)
    if address is not None:
        if is_internal_address(address):
            raise UnsafeUrlError(f"points at an internal address ({address})")
        return
    if not set(host) <= _HOST_NAME_CHARACTERS:
        raise UnsafeUrlError(
            f"host {host!r} contains characters outside a-z, 0-9, '.', '-' and '_'"
        )
    if len(host) > MAX_HOST_NAME_LENGTH or any(
        not label or len(label) > MAX_LABEL_LENGTH for label in host.split(".")
    ):
        raise UnsafeUrlError(
            f"host {host[:80]!r} is not a valid DNS name (labels of 1 to "
            f"{MAX_LABEL_LENGTH} characters, {MAX_HOST_NAME_LENGTH} in all)"
        )
    if host in INTERNAL_HOST_NAMES or host.endswith(INTERNAL_HOST_SUFFIXES):
        raise UnsafeUrlError(f"points at an internal host name ({host})")


async def check_resolved_host(host: str, port: int, allowlist: Allowlist) -> None:
    """Resolve `host` and raise `UnsafeUrlError` when any address is internal.

    Raises `UnresolvableHostError` when the name has no address.
    """
    if allowlist.admits(host, port):
        return
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses = {literal}
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise UnresolvableHostError(
                f"host name {host} cannot be resolved: {error}"
            ) from None
        # An IPv6 link-local result carries its zone (`fe80::1%eth0`).
        addresses = {
            ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos
        }
    for address in addresses:
        if is_internal_address(address) and not allowlist.admits(str(address), port):
            raise UnsafeUrlError(
                f"host {host} resolves to an internal address ({address})"
            )
