"""Where outbound requests the platform makes for users (webhooks) may go: SSRF checks.

A URL passes only if it is ``http``/``https``, carries no credentials, and its host — a
name, or an address in any spelling an HTTP client or the C resolver accepts (``127.1``,
``0x7f.1``, ``2130706433``, ``017700000001``, ``[::ffff:127.0.0.1]``, full-width digits) —
resolves only to public addresses. One non-public answer refuses the whole name, because
the client may connect to any of them. IPv6 forms that carry an IPv4 address (mapped,
compatible, SIIT, NAT64, 6to4, Teredo) are judged by that address.

The caller connects to an address returned by ``check_url`` rather than resolving the name
again, so a name that answers differently the second time (DNS rebinding) gains nothing.
An ``AllowList`` lets an administrator open exact host names and address ranges.

Pure: no domain imports; the resolver is a parameter so tests need no DNS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses a client would connect to
Resolver = Callable[[str, int], Sequence[str]]

SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_FORBIDDEN_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")
_NETLOC = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*)(?::[0-9]*)?$")


class UnsafeTarget(ValueError):
    """The URL may not be requested; ``reason`` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Ordered: the first match names the reason. Anything not listed that Python does not call
# global is refused as well (see ``address_problem``).
_DENIED: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("0.0.0.0/32", "::/128"), "the unspecified address"),
    (_nets("0.0.0.0/8"), "a 'this network' address (0.0.0.0/8)"),
    (_nets("127.0.0.0/8", "::1/128"), "a loopback address"),
    (_nets("169.254.169.254/32", "fd00:ec2::254/128"), "the cloud metadata address"),
    (_nets("169.254.0.0/16", "fe80::/10"), "a link-local address"),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "a private address"),
    (_nets("fc00::/7"), "a private (unique local) address"),
    (_nets("fec0::/10"), "a site-local address"),
    (_nets("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_nets("224.0.0.0/4", "ff00::/8"), "a multicast address"),
    (_nets("255.255.255.255/32"), "the broadcast address"),
    (_nets("240.0.0.0/4"), "a reserved address"),
    (_nets("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (
        _nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"),
        "a documentation address",
    ),
    (_nets("198.18.0.0/15"), "a benchmarking address"),
    (_nets("192.0.0.0/24", "100::/64"), "a reserved special-purpose address"),
)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, with the name of the form."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return "an IPv4-mapped form", low
    if ip in _TRANSLATED:
        return "an IPv4-translated form", low
    if ip in _COMPATIBLE and int(ip) > 1:
        return "an IPv4-compatible form", low
    if ip in _NAT64:
        return "a NAT64 form", low
    if ip.sixtofour is not None:
        return "a 6to4 form", ip.sixtofour
    if ip.teredo is not None:
        return "a Teredo form", ip.teredo[1]
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why a client of the platform must not connect to ``ip``; None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "an address with a zone (scope) id"
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            problem = address_problem(v4)
            if problem is not None:
                return f"{form} of {v4}, {problem}"
            if ip in _NAT64 or ip.sixtofour is not None:
                return None  # a translator's route to a public IPv4 address
            if ip.teredo is None:
                return f"{form} of {v4}; use the IPv4 address itself"
    for networks, reason in _DENIED:
        if any(ip.version == net.version and ip in net for net in networks):
            return reason
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved special-purpose address"
    return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read the way ``inet_aton`` (and the WHATWG URL parser) read it: one to four
    parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining
    bytes — so ``127.1``, ``0x7f.1``, ``2130706433`` and ``017700000001`` are 127.0.0.1.

    None when the last part is not a number (a host name); ``UnsafeTarget`` when it is one
    but the whole is not a valid address (``1.2.3.4.5``, ``08``, ``256.1.1.1``).
    """
    parts = host.split(".")
    if not _NUMERIC_PART.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMERIC_PART.match(p) for p in parts):
        raise UnsafeTarget(f"{host!r} is a malformed numeric address")
    numbers = [_number(p, host) for p in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise UnsafeTarget(f"{host!r} is a malformed numeric address (a part is too large)")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _number(part: str, host: str) -> int:
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10)
    except ValueError:
        raise UnsafeTarget(f"{host!r} is a malformed numeric address") from None


def canonical_host(raw: str) -> str:
    """Lower case, IDNA-encoded (full-width digits become ASCII), without the trailing dot."""
    if not raw or _FORBIDDEN_CHARS.search(raw) or "%" in raw:
        raise UnsafeTarget(f"the host {raw!r} is not a valid host name")
    host = raw.rstrip(".").lower() if not raw.startswith("[") else raw.lower()
    if not host:
        raise UnsafeTarget(f"the host {raw!r} is not a valid host name")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise UnsafeTarget(f"the host {raw!r} is not a valid host name") from None


def host_address(host: str) -> IPAddress | None:
    """The address a canonical host spells, or None for a name."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise UnsafeTarget(f"the host {host!r} is not a valid IPv6 literal")
        try:
            return ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UnsafeTarget(f"the host {host!r} is not a valid IPv6 literal") from None
    if ":" in host:
        raise UnsafeTarget(f"the host {host!r} is not valid (IPv6 literals need brackets)")
    return legacy_ipv4(host)


def is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or host == "localhost.localdomain"


@dataclass(frozen=True)
class Target:
    """A parsed URL: what to connect to and what to send as Host and SNI."""

    scheme: str
    host: str  # canonical: a name, a dotted IPv4, or a bracketed IPv6
    port: int
    path: str  # path and query, never empty
    address: IPAddress | None  # set when the host is an address literal

    @property
    def host_header(self) -> str:
        default = SCHEMES[self.scheme] == self.port
        return self.host if default else f"{self.host}:{self.port}"

    def url_for(self, ip: IPAddress) -> str:
        """The URL that connects to ``ip`` itself (the Host header names the host)."""
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


def parse_url(url: str) -> Target:
    """Scheme, credentials and host syntax checks; no resolution."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise UnsafeTarget("the URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"the URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsafeTarget(
            f"the scheme {parts.scheme or '(none)'!r} is not allowed: use https or http"
        )
    if "@" in parts.netloc:
        raise UnsafeTarget("credentials (user:password@) are not allowed in a webhook URL")
    netloc = _NETLOC.match(parts.netloc)
    if netloc is None:
        raise UnsafeTarget(f"the host and port {parts.netloc!r} are malformed")
    host = canonical_host(netloc.group(1))
    if port == 0:
        raise UnsafeTarget("port 0 is not a port one can connect to")
    address = host_address(host)
    if address is not None:
        host = f"[{address}]" if address.version == 6 else str(address)
    else:
        _check_name(host)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port or SCHEMES[scheme], path, address)


def _check_name(host: str) -> None:
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UnsafeTarget(f"the host {host!r} is not a valid host name")


class AllowList:
    """Exact host names and address ranges an administrator opened for webhooks.

    A host entry opens that name whatever it resolves to (the administrator vouches for the
    name); a range entry opens addresses in it, however they are spelled or reached.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in entries:
            kind, value = parse_allow_entry(entry)
            if kind == "host":
                self.hosts.add(value)
            else:
                self.networks.append(ipaddress.ip_network(value))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_allow_entry(entry: str) -> tuple[str, str]:
    """``("host", name)`` or ``("network", cidr)`` in canonical form; ValueError if invalid."""
    text = entry.strip()
    try:
        if "/" in text:
            return "network", str(ipaddress.ip_network(text.strip("[]"), strict=False))
        host = canonical_host(text)
        address = host_address(host if ":" not in host or host.startswith("[") else f"[{host}]")
    except (UnsafeTarget, ValueError) as exc:
        raise ValueError(f"{entry!r} is neither a host name nor an address range") from exc
    if address is not None:
        return "network", str(ipaddress.ip_network(address))
    try:
        _check_name(host)
    except UnsafeTarget as exc:
        raise ValueError(f"{entry!r} is neither a host name nor an address range") from exc
    return "host", host


@dataclass(frozen=True)
class CheckedTarget:
    target: Target
    addresses: tuple[IPAddress, ...]  # every one checked; connect to these, in order


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(
    url: str, *, allow: AllowList | None = None, resolve: Resolver = system_resolver
) -> CheckedTarget:
    """Parse, resolve and check ``url``; raise ``UnsafeTarget`` naming the reason."""
    allow = allow or AllowList()
    target = parse_url(url)
    if target.address is not None:
        _check_address(target.address, target.host, allow)
        return CheckedTarget(target, (target.address,))
    if allow.allows_host(target.host):
        return CheckedTarget(target, _resolve(target, resolve))
    if is_localhost_name(target.host):
        raise UnsafeTarget(f"{target.host!r} is a loopback name")
    addresses = _resolve(target, resolve)
    for ip in addresses:
        _check_address(ip, target.host, allow)
    return CheckedTarget(target, addresses)


def _resolve(target: Target, resolve: Resolver) -> tuple[IPAddress, ...]:
    try:
        answers = resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"the host {target.host!r} could not be resolved: {exc}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError:
            raise UnsafeTarget(
                f"the host {target.host!r} resolved to {answer!r}, not an address"
            ) from None
    if not addresses:
        raise UnsafeTarget(f"the host {target.host!r} resolved to no address")
    return tuple(dict.fromkeys(addresses))


def _check_address(ip: IPAddress, host: str, allow: AllowList) -> None:
    if allow.allows_address(ip):
        return
    problem = address_problem(ip)
    if problem is None:
        return
    shown = host.strip("[]")
    where = f"{host} is {problem}" if shown == str(ip) else f"{host} resolves to {ip}, {problem}"
    raise UnsafeTarget(where)
