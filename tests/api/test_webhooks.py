"""Webhook endpoints through the app: who sees which, what changes are recorded, and the
targets refused at save and at delivery (SSRF) when private addresses are not allowed."""

from __future__ import annotations

import json
import re
import socket

import pytest

from sessions_api.models import Role
from tests.support.api import AUDIT_EVENTS, UNREACHABLE_HOOK, WEBHOOK_ENDPOINTS, assert_error, webhook_path


def _create(client, admin, team, **fields):
    body = {"url": UNREACHABLE_HOOK, "events": ["session.released"], **fields}
    return client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id))


def test_an_endpoint_is_created_shown_changed_and_deleted_and_each_change_is_audited(client, world, team, admin):
    headers = admin.acting_on(team.id)
    created = _create(client, admin, team, description="CI")
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", endpoint["secret"])
    assert created.headers["Cache-Control"] == "no-store"  # the secret, shown once, is never cached
    assert endpoint["events"] == ["session.released"] and endpoint["enabled"] and endpoint["description"] == "CI"
    shown = client.get(webhook_path(endpoint["id"]), headers=headers).json()
    assert "secret" not in shown and shown == {k: v for k, v in endpoint.items() if k != "secret"}
    assert [item["id"] for item in client.get(WEBHOOK_ENDPOINTS, headers=headers).json()["data"]] == [endpoint["id"]]

    changes = {"events": ["session.started", "session.expired"], "description": None, "enabled": False}
    changed = client.patch(webhook_path(endpoint["id"]), json=changes, headers=headers).json()
    assert {name: changed[name] for name in changes} == changes
    rotating = client.post(webhook_path(endpoint["id"], "rotate-secret"), headers=headers)
    assert rotating.headers["Cache-Control"] == "no-store"
    rotated = rotating.json()
    assert rotated["secret"] != endpoint["secret"] and rotated["id"] == endpoint["id"]
    assert client.delete(webhook_path(endpoint["id"]), headers=headers).status_code == 204
    assert_error(client.get(webhook_path(endpoint["id"]), headers=headers), 404, "not_found")

    events = client.get(AUDIT_EVENTS, headers=headers).json()["data"]
    webhook_events = [event for event in events if event["target"]["kind"] == "webhook_endpoint"]
    assert [event["type"] for event in webhook_events] == [
        "webhook_endpoint.deleted",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.updated",
        "webhook_endpoint.created",
    ]
    updated = webhook_events[2]["data"]
    assert updated["before"] == {"events": ["session.released"], "description": "CI", "enabled": True}
    assert updated["after"] == changes
    assert all(endpoint["secret"] not in str(event) for event in events)


def test_another_organizations_endpoint_answers_as_one_that_does_not_exist(client, world, team, admin):
    endpoint = _create(client, admin, team).json()
    other = world.organization("Other")
    stranger = world.member(of=[(other, Role.admin)])
    for method, path in [
        ("GET", webhook_path(endpoint["id"])),
        ("PATCH", webhook_path(endpoint["id"])),
        ("DELETE", webhook_path(endpoint["id"])),
        ("POST", webhook_path(endpoint["id"], "rotate-secret")),
        ("POST", webhook_path(endpoint["id"], "test")),
        ("GET", webhook_path(endpoint["id"], "deliveries")),
    ]:
        body = {"enabled": False} if method == "PATCH" else None
        answer = client.request(method, path, json=body, headers=stranger.acting_on(other.id))
        assert_error(answer, 404, "not_found")
    assert client.get(WEBHOOK_ENDPOINTS, headers=stranger.acting_on(other.id)).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": UNREACHABLE_HOOK, "events": []},
        {"url": UNREACHABLE_HOOK, "events": ["session.paused"]},
        {"url": "ftp://example.com/hook", "events": ["session.started"]},
        {"url": UNREACHABLE_HOOK, "events": ["session.started"], "description": "a\x00b"},
        {"url": UNREACHABLE_HOOK, "events": ["session.started"], "description": "\ud800"},
        {"url": UNREACHABLE_HOOK, "events": ["session.started"], "description": "\x95"},
        {"url": UNREACHABLE_HOOK + "\x85", "events": ["session.started"]},
    ],
)
def test_malformed_endpoints_are_refused(client, team, admin, body):
    # As JSON escapes: a lone surrogate cannot be sent as UTF-8.
    headers = {**admin.acting_on(team.id), "Content-Type": "application/json"}
    assert_error(client.post(WEBHOOK_ENDPOINTS, content=json.dumps(body), headers=headers), 400, "invalid_request")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://224.0.0.1/hook",
        "https://localhost/hook",  # a name that resolves to 127.0.0.1
        "http://hooks.example.invalid/plain-http",
        # IPv6 forms that reach private IPv4 addresses, and site-local IPv6.
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "https://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
        "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
        "https://[::7f00:1]/hook",  # IPv4-compatible 127.0.0.1
        "https://[::a00:1]/hook",  # IPv4-compatible 10.0.0.1
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
        "https://[fec0::1]/hook",  # site-local
    ],
)
def test_targets_that_are_not_public_https_are_refused(client, team, admin, url):
    body = {"url": url, "events": ["session.started"]}
    refused = assert_error(
        client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)), 422, "unsafe_webhook_url"
    )
    message = refused["error"]["message"]
    assert "public" in message or "https" in message
    # The refusal names no address: what a name resolves to is not the caller's to learn.
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|::", message), message
    endpoint = _create(client, admin, team).json()
    changed = client.patch(webhook_path(endpoint["id"]), json={"url": url}, headers=admin.acting_on(team.id))
    assert_error(changed, 422, "unsafe_webhook_url")


def test_the_port_allow_list_refuses_other_ports(settings, world):
    from starlette.testclient import TestClient

    from sessions_api.web.app import create_app

    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)])
    headers = admin.acting_on(team.id)
    with TestClient(create_app(settings.replace(webhook_allowed_ports="443,8443"))) as client:
        allowed = client.post(
            WEBHOOK_ENDPOINTS,
            json={"url": "https://hooks.example.invalid:8443/h", "events": ["session.started"]},
            headers=headers,
        )
        assert allowed.status_code == 201, allowed.text
        refused = client.post(
            WEBHOOK_ENDPOINTS,
            json={"url": "https://hooks.example.invalid:22/h", "events": ["session.started"]},
            headers=headers,
        )
        assert "443, 8443" in assert_error(refused, 422, "unsafe_webhook_url")["error"]["message"]


def test_public_forms_of_ipv6_are_still_webhook_targets():
    from ipaddress import ip_address

    from sessions_api.core.outbound import is_public

    assert is_public(ip_address("2606:4700::1111"))  # a public IPv6 address
    assert is_public(ip_address("64:ff9b::808:808"))  # NAT64 of 8.8.8.8: an IPv6-only network's way out
    assert is_public(ip_address("2002:808:808::1"))  # 6to4 of 8.8.8.8
    assert not is_public(ip_address("64:ff9b::a00:1"))  # NAT64 of 10.0.0.1


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_not_contacted(client, team, admin, monkeypatch):
    endpoint = _create(client, admin, team).json()  # does not resolve when saved
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host, *args, **kwargs):  # ... and then resolves to the loopback (DNS rebinding)
        if host == "hooks.example.invalid":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    attempt = client.post(webhook_path(endpoint["id"], "test"), headers=admin.acting_on(team.id)).json()
    assert attempt["succeeded"] is False and attempt["responseStatus"] is None
    assert attempt["error"] == "unsafe_target"  # a reason code, never the address it found
    assert attempt["event"]["type"] == "webhook.test" and attempt["attempt"] == 1
    listed = client.get(webhook_path(endpoint["id"], "deliveries"), headers=admin.acting_on(team.id)).json()
    assert listed["data"] == [attempt]
