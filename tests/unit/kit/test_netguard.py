"""SSRF checks for webhook URLs: every spelling of an internal address is refused, public
targets pass, the allow-list opens exactly what it names. No DNS: a fake resolver."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.kit.netguard import (
    AllowList,
    UnsafeTarget,
    address_problem,
    check_url,
    legacy_ipv4,
    parse_allow_entry,
    parse_url,
)

PUBLIC_V4 = "93.184.215.14"
DNS = {
    "hooks.example.com": [PUBLIC_V4],
    "dual.example.com": [PUBLIC_V4, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebind.example.com": [PUBLIC_V4, "127.0.0.1"],  # one bad answer spoils the name
    "metadata.example.com": ["169.254.169.254"],
    "hooks.internal": ["10.1.2.3"],
    "localhost": ["127.0.0.1", "::1"],
}


def resolver(host: str, port: int) -> Sequence[str]:
    if host not in DNS:
        raise OSError("Name or service not known")
    return DNS[host]


def refused(url: str, allow: AllowList | None = None) -> str:
    with pytest.raises(UnsafeTarget) as caught:
        check_url(url, allow=allow, resolve=resolver)
    return caught.value.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # the bypass spellings of 127.0.0.1
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1, a loopback"),
        ("http://[0:0:0:0:0:ffff:7f00:1]/", "IPv4-mapped form of 127.0.0.1"),
        ("http://localhost./", "loopback name"),
        ("http://LOCALHOST/", "loopback name"),
        ("http://LocalHost.:8080/x", "loopback name"),
        ("http://app.localhost/", "loopback name"),
        ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "loopback"),
        # other loopback, link-local, private, special
        ("http://127.0.0.2/", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://192.0.2.1/", "documentation"),
        # IPv6 forms carrying an internal IPv4 address
        ("http://[::127.0.0.1]/", "IPv4-compatible form of 127.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
        ("http://[2002:a00:1::]/", "6to4 form of 10.0.0.1"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1, a private"),
        ("http://[::ffff:0:a00:1]/", "IPv4-translated form of 10.0.0.1"),
        ("http://[64:ff9b:1::1]/", "local-use NAT64"),
        # names resolving inward, or not at all
        ("http://metadata.example.com/", "resolves to 169.254.169.254"),
        ("http://rebind.example.com/", "resolves to 127.0.0.1"),
        ("http://hooks.internal/", "resolves to 10.1.2.3, a private"),
        ("http://nowhere.example.com/", "could not be resolved"),
        # not http(s), credentials, malformed
        ("ftp://hooks.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://hooks.example.com/", "scheme"),
        ("hooks.example.com/x", "scheme"),
        ("http://user:pw@hooks.example.com/", "credentials"),
        ("http://user@hooks.example.com/", "credentials"),
        ("http://hooks.example.com@127.0.0.1/", "credentials"),
        ("http://evil.com\\@127.0.0.1/", "backslash"),
        ("http://hooks.example.com /", "whitespace"),
        ("http://1.2.3.4.5/", "malformed numeric"),
        ("http://08/", "malformed numeric"),
        ("http://256.1.1.1/", "malformed numeric"),
        ("http://1.2.3.0x100/", "malformed numeric"),
        ("http://[fe80::1%25eth0]/", "not a valid host"),
        ("http://%31%32%37.0.0.1/", "not a valid host"),
        ("http://[::1/", "malformed"),
        ("http://hooks.example.com:0/", "port 0"),
        ("http://hooks.example.com:99999/", "malformed"),
        ("http:///path", "not a valid host"),
    ],
)
def test_internal_and_malformed_targets_are_refused_with_a_reason(url: str, reason: str) -> None:
    assert reason in refused(url)


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "addresses"),
    [
        ("https://hooks.example.com/in?x=1", "hooks.example.com", 443, "/in?x=1", [PUBLIC_V4]),
        ("http://HOOKS.example.com.:8080", "hooks.example.com", 8080, "/", [PUBLIC_V4]),
        ("https://93.184.215.14/h", PUBLIC_V4, 443, "/h", [PUBLIC_V4]),
        ("http://1572394766/", PUBLIC_V4, 80, "/", [PUBLIC_V4]),  # a public one, as a number
        ("https://[2606:4700::1111]/", "[2606:4700::1111]", 443, "/", ["2606:4700::1111"]),
        ("https://[2002:808:808::]/", "[2002:808:808::]", 443, "/", ["2002:808:808::"]),
        ("https://[64:ff9b::808:808]/", "[64:ff9b::808:808]", 443, "/", ["64:ff9b::808:808"]),
        ("https://dual.example.com/", "dual.example.com", 443, "/", DNS["dual.example.com"]),
    ],
)
def test_public_targets_pass_and_name_what_to_connect_to(
    url: str, host: str, port: int, path: str, addresses: list[str]
) -> None:
    checked = check_url(url, resolve=resolver)
    assert (checked.target.host, checked.target.port, checked.target.path) == (host, port, path)
    assert [str(a) for a in checked.addresses] == addresses


def test_the_url_to_connect_to_is_the_address_and_the_host_header_the_name() -> None:
    target = check_url("https://hooks.example.com:8443/a?b=c", resolve=resolver)
    ip = target.addresses[0]
    assert target.target.url_for(ip) == f"https://{PUBLIC_V4}:8443/a?b=c"
    assert target.target.host_header == "hooks.example.com:8443"
    assert parse_url("https://hooks.example.com/").host_header == "hooks.example.com"
    v6 = ipaddress.ip_address("2606:4700::1111")
    assert parse_url("http://x.example.com/").url_for(v6) == "http://[2606:4700::1111]:80/"


def test_the_allow_list_opens_ranges_in_any_spelling_and_exact_names() -> None:
    allow = AllowList(["127.0.0.1/32", "hooks.internal", "10.9.0.0/16"])
    for url in ("http://127.0.0.1:9000/", "http://127.1:9000/", "http://2130706433/"):
        assert str(check_url(url, allow=allow, resolve=resolver).addresses[0]) == "127.0.0.1"
    assert check_url("http://hooks.internal/", allow=allow, resolve=resolver).addresses
    assert check_url("http://HOOKS.INTERNAL./", allow=allow, resolve=resolver).addresses
    assert check_url("http://10.9.8.7/", allow=allow, resolve=resolver).addresses
    # what the entries do not name stays refused
    assert "loopback" in refused("http://127.0.0.2/", allow)
    assert "loopback" in refused("http://[::1]/", allow)  # localhost's other answer
    assert "loopback name" in refused("http://localhost/", allow)  # a name needs a name entry
    assert "private" in refused("http://10.10.0.1/", allow)
    assert check_url("http://localhost/", allow=AllowList(["localhost"]), resolve=resolver)


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("127.0.0.1/32", ("network", "127.0.0.1/32")),
        ("127.0.0.1", ("network", "127.0.0.1/32")),
        ("127.1", ("network", "127.0.0.1/32")),
        ("10.0.0.7/8", ("network", "10.0.0.0/8")),
        ("::1", ("network", "::1/128")),
        ("[::1]", ("network", "::1/128")),
        ("fd00::/8", ("network", "fd00::/8")),
        ("Hooks.Internal.", ("host", "hooks.internal")),
        (" localhost ", ("host", "localhost")),
    ],
)
def test_allow_entries_are_stored_in_canonical_form(entry: str, canonical: tuple[str, str]) -> None:
    assert parse_allow_entry(entry) == canonical


@pytest.mark.parametrize("entry", ["", "*.example.com", "a b", "300.1.1.1", "10.0.0.0/33", "x/y"])
def test_invalid_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an address range"):
        parse_allow_entry(entry)


# --- properties -------------------------------------------------------------------------------

addresses_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def _spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """inet_aton's spellings of one address: as a number, two or three parts, hex, octal."""
    n = int(ip)
    a, b, c, d = ip.packed
    return [
        str(n),
        hex(n),
        "0" + oct(n)[2:],
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{hex(a)}.{hex(b)}.{hex(c)}.{hex(d)}",
        f"0{oct(a)[2:]}.{b}.0x{c:x}.{d}",
    ]


@given(addresses_v4)
def test_every_legacy_spelling_reads_as_the_same_address(ip: ipaddress.IPv4Address) -> None:
    for spelling in _spellings(ip):
        assert legacy_ipv4(spelling) == ip, spelling


@given(addresses_v4)
def test_a_refused_address_is_refused_in_every_spelling_and_ipv6_form(
    ip: ipaddress.IPv4Address,
) -> None:
    problem = address_problem(ip)
    urls = [f"http://{s}/" for s in _spellings(ip)]
    mapped = ipaddress.IPv6Address(int(ipaddress.IPv6Address("::ffff:0:0")) | int(ip))
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80))
    urls += [f"http://[{mapped}]/", f"http://[{nat64}]/", f"http://[{sixtofour}]/"]
    for url in urls:
        if problem is None:
            continue
        with pytest.raises(UnsafeTarget):
            check_url(url, resolve=resolver)


@given(addresses_v4)
def test_only_global_addresses_pass(ip: ipaddress.IPv4Address) -> None:
    if address_problem(ip) is None:
        assert ip.is_global and not ip.is_multicast
        assert ip not in ipaddress.ip_network("100.64.0.0/10")


@given(st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
def test_an_ipv6_address_that_passes_is_global(ip: ipaddress.IPv6Address) -> None:
    if address_problem(ip) is None:
        assert ip.is_global and not ip.is_multicast and not ip.is_link_local


@given(st.text(max_size=80))
def test_any_text_is_either_a_checked_target_or_a_refusal(text: str) -> None:
    """No input makes the checker fail any other way (or hit the network)."""
    for url in (text, f"http://{text}/", f"https://[{text}]/"):
        try:
            checked = check_url(url, resolve=resolver)
        except UnsafeTarget:
            continue
        assert all(address_problem(ip) is None for ip in checked.addresses)
