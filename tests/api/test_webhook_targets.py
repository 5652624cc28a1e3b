"""Webhooks go only to addresses IANA's special-purpose registries call globally reachable,
after every form that embeds an IPv4 address is unwrapped. The tables below are written from
the registries themselves (IPv4 and IPv6 Special-Purpose Address Registries), not from the
server's code: each entry is tried at its first and last address and one inside."""

from __future__ import annotations

import ipaddress

import pytest

from sessions_api.core.outbound import is_public
from sessions_api.models import Role
from tests.support.api import WEBHOOK_ENDPOINTS, assert_error

# (block, globally reachable) as the registries say; None where they say "N/A" (deprecated or
# tunnelled): not a webhook target. A more specific entry overrides the block it sits in.
IPV4_REGISTRY = [
    ("0.0.0.0/8", False),
    ("0.0.0.0/32", False),
    ("10.0.0.0/8", False),
    ("100.64.0.0/10", False),
    ("127.0.0.0/8", False),
    ("169.254.0.0/16", False),
    ("172.16.0.0/12", False),
    ("192.0.0.0/24", False),
    ("192.0.0.0/29", False),
    ("192.0.0.8/32", False),
    ("192.0.0.9/32", True),
    ("192.0.0.10/32", True),
    ("192.0.0.170/32", False),
    ("192.0.0.171/32", False),
    ("192.0.2.0/24", False),
    ("192.31.196.0/24", True),
    ("192.52.193.0/24", True),
    ("192.88.99.0/24", None),
    ("192.168.0.0/16", False),
    ("192.175.48.0/24", True),
    ("198.18.0.0/15", False),
    ("198.51.100.0/24", False),
    ("203.0.113.0/24", False),
    ("240.0.0.0/4", False),
    ("255.255.255.255/32", False),
]
IPV6_REGISTRY = [
    ("::1/128", False),
    ("::/128", False),
    ("64:ff9b:1::/48", False),
    ("100::/64", False),
    ("100:0:0:1::/64", False),
    ("2001::/23", False),
    ("2001::/32", None),
    ("2001:1::1/128", True),
    ("2001:1::2/128", True),
    ("2001:1::3/128", True),
    ("2001:2::/48", False),
    ("2001:3::/32", True),
    ("2001:4:112::/48", True),
    ("2001:10::/28", None),
    ("2001:20::/28", True),
    ("2001:30::/28", True),
    ("2001:db8::/32", False),
    ("2620:4f:8000::/48", True),
    ("3fff::/20", False),
    ("5f00::/16", False),
    ("fc00::/7", False),
    ("fe80::/10", False),
]
# Not special-purpose, and no webhook target all the same.
NEVER = ["224.0.0.1", "239.255.255.250", "ff02::1", "fec0::1", "4000::1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::1"]


def _expected(address: ipaddress.IPv4Address | ipaddress.IPv6Address, registry) -> bool | None:
    holding = [(ipaddress.ip_network(block), reachable) for block, reachable in registry]
    holding = [(network, reachable) for network, reachable in holding if address in network]
    return max(holding, key=lambda entry: entry[0].prefixlen)[1]


def _samples(block: str):
    network = ipaddress.ip_network(block)
    return {network.network_address, network.broadcast_address, network.network_address + network.num_addresses // 2}


@pytest.mark.parametrize(("block", "reachable"), IPV4_REGISTRY + IPV6_REGISTRY)
def test_every_registry_entry_is_judged_as_the_registry_says(block, reachable):
    registry = IPV4_REGISTRY if ipaddress.ip_network(block).version == 4 else IPV6_REGISTRY
    for address in _samples(block):
        expected = bool(_expected(address, registry))  # "N/A": not a target
        assert is_public(address) is expected, (block, str(address))


@pytest.mark.parametrize("block", [block for block, _ in IPV4_REGISTRY] + ["8.8.8.0/24", "1.1.1.0/24"])
def test_every_form_that_embeds_ipv4_is_judged_by_the_ipv4_address(block):
    for address in _samples(block):
        expected = is_public(address)
        v4 = int(address)
        embedded = [
            ipaddress.IPv6Address((0xFFFF << 32) | v4),  # mapped ::ffff:a.b.c.d
            ipaddress.IPv6Address((0xFFFF << 48) | v4),  # translated ::ffff:0:a.b.c.d
            ipaddress.IPv6Address((0x64FF9B << 96) | v4),  # NAT64 64:ff9b::a.b.c.d
            ipaddress.IPv6Address((0x2002 << 112) | (v4 << 80) | 1),  # 6to4 2002:abcd:efgh::1
        ]
        if v4 > 0xFFFF:  # ::/96 below that is the unspecified and loopback addresses' block
            embedded.append(ipaddress.IPv6Address(v4))  # IPv4-compatible ::a.b.c.d
        for form in embedded:
            assert is_public(form) is expected, (str(address), str(form))


@pytest.mark.parametrize("text", NEVER)
def test_multicast_site_local_and_unallocated_space_are_never_targets(text):
    assert not is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_targets(text):
    assert is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("host", ["[::ffff:0:10.0.0.1]", "192.0.0.8", "[3fff::1]", "[5f00::1]", "[::ffff:0:7f00:1]"])
def test_an_endpoint_at_such_an_address_is_refused(client, world, team, host):
    admin = world.member(of=[(team, Role.admin)])
    body = {"url": f"https://{host}/hook", "events": ["session.started"]}
    refused = client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id))
    assert_error(refused, 422, "unsafe_webhook_url")
