"""Refuse provider URLs that point inside the network (SSRF protection).

A base URL is checked when a provider is saved (`check_url`) and, because a host
name may resolve differently later, again at every call after resolution
(`check_resolved_host`). Internal addresses are loopback, private ranges,
link-local (including the cloud metadata address 169.254.169.254), CGNAT,
multicast, reserved and unspecified ones, their IPv6 forms and IPv4-mapped IPv6
forms, and numeric spellings that the C resolver accepts (`2130706433`,
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


class UnsafeUrlError(ValueError):
    """The URL is malformed or points at an address that is not allowed."""


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
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is not None:
            return is_internal_address(embedded)
    return not address.is_global or address.is_multicast


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def check_url(url: str, allowlist: Allowlist) -> None:
    """Check a URL before it is stored; raise `UnsafeUrlError` with the reason.

    A host name that is not an address literal passes here and is checked
    after resolution, when it is called.
    """
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
    if address is not None and is_internal_address(address):
        raise UnsafeUrlError(f"points at an internal address ({address})")
    if host in INTERNAL_HOST_NAMES or host.endswith(INTERNAL_HOST_SUFFIXES):
        raise UnsafeUrlError(f"points at an internal host name ({host})")


async def check_resolved_host(host: str, port: int, allowlist: Allowlist) -> None:
    """Resolve `host` and raise `UnsafeUrlError` when any address is internal."""
    if allowlist.admits(host, port):
        return
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses = {literal}
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise UnsafeUrlError(
                f"host name {host} cannot be resolved: {error}"
            ) from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    for address in addresses:
        if is_internal_address(address) and not allowlist.admits(str(address), port):
            raise UnsafeUrlError(
                f"host {host} resolves to an internal address ({address})"
            )
