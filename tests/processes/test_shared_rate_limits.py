"""Rate limits shared by every worker through Redis, surviving Redis going away, and the
client address taken from X-Forwarded-For only from a trusted proxy."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.live_server import cli_json, running_server, server_env
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.live_server
REDIS = ("127.0.0.1", 6379)


@pytest.fixture(scope="module")
def redis_up():
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        pytest.fail("Redis at 127.0.0.1:6379 is needed (redis-server --daemonize yes --port 6379)")


def _status(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def caller(private_database_url) -> tuple[dict, str]:
    env = server_env(
        private_database_url,
        # A prefix of its own: other runs and tests share this Redis.
        SESSIONS_API_RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
    )
    user = cli_json(env, "user", "create", "--email", "rita@example.com")
    return env, cli_json(env, "key", "create", "--user", user["id"])["secret"]


def test_the_budget_holds_across_two_workers_on_redis(redis_up, caller, tmp_path):
    env, secret = caller
    env = {**env, "SESSIONS_API_RATE_LIMIT": "30/minute", "SESSIONS_API_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0"}
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        # Each request on a connection of its own, so that both workers take some.
        with ThreadPoolExecutor(6) as pool:
            statuses = list(
                pool.map(lambda _: _status(f"{base}/sessions", {"Authorization": f"Bearer {secret}"}), range(45))
            )
    assert statuses.count(200) == 30 and statuses.count(429) == 15, statuses
    assert "each counts on its own" not in (tmp_path / "server.log").read_text()


def test_memory_storage_with_several_workers_is_warned_about(caller, tmp_path):
    env, _secret = caller
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log"):
        pass
    assert "each of the 2 workers counts on its own" in (tmp_path / "server.log").read_text()


def test_requests_are_served_while_redis_is_away(redis_up, caller, tmp_path):
    env, secret = caller
    proxy = TcpProxy(*REDIS)
    proxy.start()
    env = {
        **env,
        "SESSIONS_API_RATE_LIMIT": "5/minute",
        "SESSIONS_API_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{proxy.port}/0",
    }
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        with running_server(env, log_path=tmp_path / "server.log") as (base, _process):
            assert [_status(f"{base}/sessions", headers) for _ in range(6)] == [200] * 5 + [429]
            proxy.stop()
            assert [_status(f"{base}/sessions", headers) for _ in range(10)] == [200] * 10  # fail open
            proxy.start()
            time.sleep(1.5)  # the storage is left alone for a second after a failure
            assert [_status(f"{base}/sessions", headers) for _ in range(2)] == [429, 429]  # counted again
            metrics = urllib.request.urlopen(base.removesuffix("/api/v1") + "/metrics", timeout=10).read().decode()
    finally:
        proxy.stop()
    errors = next(
        line for line in metrics.splitlines() if line.startswith("sessions_api_rate_limit_storage_errors_total")
    )
    assert float(errors.split()[-1]) >= 1
    log = (tmp_path / "server.log").read_text()
    assert log.count("rate limits: the storage failed") == 1  # at most once a minute
    assert "Traceback" not in log


def test_forwarded_addresses_count_only_from_a_trusted_proxy(caller, tmp_path):
    env, _secret = caller
    bad_key = {"Authorization": "Bearer sapi_0000000000000000_" + "A" * 43}
    env = {**env, "SESSIONS_API_AUTH_FAILURE_LIMIT": "3/minute"}

    def failures(base: str, forwarded_for: str) -> list[int]:
        return [_status(f"{base}/sessions", {**bad_key, "X-Forwarded-For": forwarded_for}) for _ in range(4)]

    with running_server(env, log_path=tmp_path / "untrusted.log") as (base, _process):
        assert failures(base, "203.0.113.1") == [401, 401, 401, 429]
        assert failures(base, "203.0.113.2") == [429] * 4  # the header is ignored: one address
    trusted = {**env, "SESSIONS_API_TRUSTED_PROXIES": "127.0.0.1"}
    with running_server(trusted, log_path=tmp_path / "trusted.log") as (base, _process):
        assert failures(base, "203.0.113.1") == [401, 401, 401, 429]
        assert failures(base, "203.0.113.2") == [401, 401, 401, 429]  # another client, its own budget
