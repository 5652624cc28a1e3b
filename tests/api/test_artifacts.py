"""Session artifacts end to end, on both stores (the file store through this server, S3 through
a real SeaweedFS) and both databases: declared, uploaded, checked, listed, downloaded with
ranges, deleted; every refusal in the envelope; what they count kept right."""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest

from sessions_api.core.timestamps import utcnow
from sessions_api.models import Role
from sessions_api.models.artifacts import retention
from sessions_api.models.artifacts.storage import store
from tests.support.artifacts import API, Payload, attach, fetch, send
from tests.support.s3_server import BUCKET, REGION

VIDEO = Payload(bytes(range(256)) * 4096, type="video", name="screen recording é.mp4", content_type="video/mp4")
LOG = Payload(b"I/ActivityManager: Start proc 4242\n" * 300)


@pytest.fixture(params=["file", "s3"])
def settings(request, settings):
    """The tests' settings, with each store in turn."""
    if request.param == "file":
        return settings
    server = request.getfixturevalue("s3_server")
    return settings.replace(
        artifact_store=f"s3://{BUCKET}/api-tests", s3_endpoint_url=server.endpoint_url, s3_region=REGION
    )


def _artifacts(session_id: str) -> str:
    return f"{API}/sessions/{session_id}/artifacts"


def _declare(client, member, team, session_id, payload=LOG, **changes):
    return client.post(_artifacts(session_id), json=payload.declared(**changes), headers=member.acting_on(team.id))


def _session(client, member, team, session_id):
    return client.get(f"{API}/sessions/{session_id}", headers=member.acting_on(team.id)).json()


def _stored_bytes(client, member, team):
    return client.get(f"{API}/organizations/{team.id}", headers=member.headers).json()["plan"]["storedBytes"]


def test_an_artifact_is_declared_uploaded_completed_and_downloaded(client, writer, team, session_id):
    created = _declare(client, writer, team, session_id, VIDEO)
    assert created.status_code == 201, created.text
    artifact = created.json()
    assert artifact["status"] == "pending" and artifact["availableAt"] is None and artifact["retainUntil"] is None
    assert created.headers["Location"] == f"{_artifacts(session_id)}/{artifact['id']}"
    assert artifact["upload"]["method"] == "PUT"
    assert _stored_bytes(client, writer, team) == len(VIDEO.data)  # a pending upload counts at its size

    assert send(client, artifact["upload"], VIDEO.data).status_code in (200, 204)
    completed = client.post(f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id))
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "available"
    assert completed.json()["retainUntil"] > completed.json()["availableAt"]
    assert _session(client, writer, team, session_id)["artifactCount"] == 1
    listed = client.get(f"{API}/sessions", headers=writer.acting_on(team.id)).json()["data"]
    assert listed[0]["artifactCount"] == 1

    shown = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    download = fetch(client, shown["download"]["url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == VIDEO.sha256
    assert download.headers["content-type"].startswith("video/mp4")
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''screen%20recording%20%C3%A9.mp4" in disposition


def test_a_download_seeks_with_ranges(client, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, VIDEO)
    url = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    part = fetch(client, url["download"]["url"], Range="bytes=1000-1999")
    assert part.status_code == 206
    assert part.content == VIDEO.data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(VIDEO.data)}"
    tail = fetch(client, url["download"]["url"], Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == VIDEO.data[-10:]
    beyond = fetch(client, url["download"]["url"], Range=f"bytes={len(VIDEO.data)}-")
    assert beyond.status_code == 416


def test_file_store_downloads_cannot_run_as_pages_of_this_origin(client, writer, team, session_id, settings):
    if not settings.artifact_store.startswith("file://"):
        pytest.skip("S3 serves its own downloads")
    page = Payload(b"<script>alert(1)</script>", type="other", name="x.html", content_type="text/html")
    artifact = attach(client, writer.acting_on(team.id), session_id, page)
    url = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    download = fetch(client, url["download"]["url"])
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "sandbox"
    assert download.headers["content-disposition"].startswith("attachment;")
    for ignored in ("bytes=5-3", "bytes=abc", "items=0-1", "bytes=-"):  # RFC 9110: another form is ignored
        whole = fetch(client, url["download"]["url"], Range=ignored)
        assert whole.status_code == 200 and whole.content == page.data, ignored
    beyond = fetch(client, url["download"]["url"], Range="bytes=9999-")
    assert beyond.status_code == 416
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"
    assert beyond.headers["content-range"] == f"bytes */{len(page.data)}"


def test_listing_pages_and_filters_by_type(client, writer, team, session_id):
    made = [attach(client, writer.acting_on(team.id), session_id, payload)["id"] for payload in (LOG, VIDEO, LOG)]
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"before": cursor} if cursor else {})}
        page = client.get(_artifacts(session_id), params=query, headers=writer.acting_on(team.id)).json()
        seen += [artifact["id"] for artifact in page["data"]]
        assert all("download" not in artifact for artifact in page["data"])
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == made[::-1]
    videos = client.get(_artifacts(session_id), params={"type": "video"}, headers=writer.acting_on(team.id)).json()
    assert [artifact["id"] for artifact in videos["data"]] == [made[1]]


def test_bytes_other_than_declared_are_refused(client, writer, team, session_id):
    artifact = _declare(client, writer, team, session_id).json()
    wrong = send(client, artifact["upload"], LOG.data[:-1] + b"!")
    assert wrong.status_code in (400, 422), wrong.text  # S3 answers BadDigest itself
    more = send(client, artifact["upload"], LOG.data + b"!")
    assert more.status_code in (403, 413), more.text  # S3's signature covers the length
    early = client.post(f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id))
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
    assert send(client, artifact["upload"], LOG.data).status_code in (200, 204)  # the URL still works


def test_a_file_store_upload_names_what_was_wrong(client, writer, team, session_id, settings):
    if not settings.artifact_store.startswith("file://"):
        pytest.skip("S3 answers its own errors")
    artifact = _declare(client, writer, team, session_id).json()
    wrong = send(client, artifact["upload"], LOG.data[:-1] + b"!")
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "checksum_mismatch"
    more = send(client, artifact["upload"], LOG.data + b"!!")
    assert more.status_code == 413 and more.json()["error"]["code"] == "artifact_too_large"
    other_type = send(client, artifact["upload"], LOG.data, **{"Content-Type": "text/plain"})
    assert other_type.status_code == 415
    # Sent chunked (no Content-Length), the bytes stream on as they come, counted all the same.
    over = client.put(artifact["upload"]["url"], content=iter([LOG.data, b"!"]), headers=artifact["upload"]["headers"])
    assert over.status_code == 413
    chunked = client.put(
        artifact["upload"]["url"], content=iter([LOG.data[:100], LOG.data[100:]]), headers=artifact["upload"]["headers"]
    )
    assert chunked.status_code == 204, chunked.text


def test_bytes_changed_in_the_store_fail_the_artifact_at_completion(client, writer, team, session_id):
    artifact = _declare(client, writer, team, session_id).json()
    key = f"{team.id}/{session_id}/{artifact['id']}"
    _put_behind_the_api(key, LOG.data[:-1] + b"!")
    failed = client.post(f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id))
    assert failed.status_code == 422 and failed.json()["error"]["code"] == "checksum_mismatch"
    shown = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    assert shown["status"] == "failed" and "download" not in shown
    assert store().head(key) is None  # its bytes were deleted
    assert _stored_bytes(client, writer, team) == 0
    again = client.post(f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id))
    assert again.status_code == 409 and again.json()["error"]["code"] == "artifact_not_pending"


def _put_behind_the_api(key: str, data: bytes) -> None:
    """Bytes written into the store without the checks of an upload URL."""
    objects = store()
    if hasattr(objects, "client"):
        objects.client.put_object(Bucket=objects.bucket, Key=objects.prefix + key, Body=data)
    else:
        path = objects.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_completing_is_idempotent_and_counts_once(client, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    again = client.post(f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id))
    assert again.status_code == 200 and again.json() == artifact
    assert _session(client, writer, team, session_id)["artifactCount"] == 1


def test_deleting_removes_the_bytes_and_the_counts(client, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    url = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    deleted = client.delete(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id))
    assert deleted.status_code == 204
    assert fetch(client, url["download"]["url"]).status_code in (403, 404)
    assert (
        client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).status_code == 404
    )
    assert _session(client, writer, team, session_id)["artifactCount"] == 0
    assert _stored_bytes(client, writer, team) == 0
    audit = client.get(f"{API}/audit-events", headers=_admin(client, team).acting_on(team.id)).json()["data"]
    changes = [(event["type"], event["target"]) for event in audit if event["type"].startswith("artifact.")]
    target = {"kind": "artifact", "id": artifact["id"]}
    assert changes == [("artifact.deleted", target), ("artifact.created", target)]


def _admin(client, team):
    from tests.support.world import World

    return World().member(of=[(team, Role.admin)])


def test_a_deleted_artifacts_upload_url_stops_at_once(client, writer, team, session_id, settings):
    artifact = _declare(client, writer, team, session_id).json()
    client.delete(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id))
    late = send(client, artifact["upload"], LOG.data)
    if settings.artifact_store.startswith("file://"):
        assert late.status_code == 409 and late.json()["error"]["code"] == "artifact_not_pending"
    else:  # S3 takes it; nothing names it, so the orphan sweep deletes it
        key = f"{team.id}/{session_id}/{artifact['id']}"
        assert store().head(key) is not None
        _sweep_all_orphans()
        assert store().head(key) is None


def _sweep_all_orphans() -> None:
    after = ""
    for _ in range(1000):
        after = retention.sweep_orphans(after).after
        if not after:
            return


def test_a_tampered_url_is_refused(client, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    url = client.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id)).json()
    download = url["download"]["url"]
    tampered = download[:-3] + ("AAA" if not download.endswith("AAA") else "BBB")
    answer = fetch(client, tampered)
    assert answer.status_code == 403
    if not download.startswith("http"):
        assert answer.json()["error"]["code"] == "forbidden"
        assert (
            client.put(tampered, content=b"x", headers={"Content-Type": "application/octet-stream"}).status_code == 403
        )


def test_an_upload_url_fails_once_it_expires(client, world, team, settings, apps, artifact_root):
    short = settings.replace(artifact_url_ttl_seconds=1)
    from starlette.testclient import TestClient

    from sessions_api.core import db
    from sessions_api.web.app import create_app

    app = apps.get(short) or apps.setdefault(short, create_app(short))
    with db.bound(app.state.database), TestClient(app, raise_server_exceptions=False) as short_client:
        writer = world.member(of=[(team, Role.readwrite)])
        world.device()
        started = short_client.post(f"{API}/sessions", json={"platform": "android"}, headers=writer.acting_on(team.id))
        artifact = _declare(short_client, writer, team, started.json()["id"]).json()
        time.sleep(2.1)
        late = send(short_client, artifact["upload"], LOG.data)
        assert late.status_code == 403, late.text


def test_another_organizations_artifact_is_not_found(client, world, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    stranger = world.member()
    for path in (f"{_artifacts(session_id)}/{artifact['id']}", _artifacts(session_id)):
        answer = client.get(path, headers=stranger.headers)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    gone = client.delete(f"{_artifacts(session_id)}/{artifact['id']}", headers=stranger.headers)
    assert gone.status_code == 404
    unknown = client.get(f"{_artifacts(session_id)}/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=writer.headers)
    assert unknown.status_code == 404


def test_readonly_members_read_but_do_not_add(client, world, writer, team, session_id):
    attach(client, writer.acting_on(team.id), session_id, LOG)
    reader = world.member(of=[(team, Role.readonly)])
    assert client.get(_artifacts(session_id), headers=reader.acting_on(team.id)).status_code == 200
    refused = _declare(client, reader, team, session_id)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_a_store_that_does_not_answer_is_a_503_never_a_500(client, writer, team, session_id, settings, apps):
    """A file store that cannot write, an S3 store that does not answer: 503 `unavailable`
    with Retry-After, the artifact still pending (the caller may retry), nothing kept."""
    from starlette.testclient import TestClient

    from sessions_api.core import db
    from sessions_api.web.app import create_app
    from tests.support.live_server import free_port

    if settings.artifact_store.startswith("file://"):
        artifact = _declare(client, writer, team, session_id).json()
        incoming = store().incoming
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.write_text("not a folder")  # any write there fails, as on a full disk
        try:
            refused = send(client, artifact["upload"], LOG.data)
        finally:
            incoming.unlink()
        answering = client
    else:
        away = settings.replace(s3_endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
        app = apps.get(away) or apps.setdefault(away, create_app(away))
        answering = TestClient(app, raise_server_exceptions=False)
        with db.bound(app.state.database):
            artifact = _declare(answering, writer, team, session_id).json()
            refused = answering.post(
                f"{_artifacts(session_id)}/{artifact['id']}/complete", headers=writer.acting_on(team.id)
            )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "unavailable" and refused.headers["retry-after"]
    shown = answering.get(f"{_artifacts(session_id)}/{artifact['id']}", headers=writer.acting_on(team.id))
    assert shown.json()["status"] == "pending"


def test_the_file_stores_urls_are_absolute_under_a_public_url(settings):
    """Behind a proxy, SESSIONS_API_PUBLIC_URL makes the file store's URLs absolute."""
    import pydantic

    from sessions_api.core.stores import opened

    if not settings.artifact_store.startswith("file://"):
        pytest.skip("S3's URLs are the store's")
    public = settings.replace(public_url="https://api.example.com/")
    assert public.public_url == "https://api.example.com"
    objects = opened(public.artifact_store_url(), url_base=public.public_url + "/api/v1/artifact-files")
    upload = objects.upload("o/s/a", size=1, sha256="0" * 64, content_type="text/plain", expires_at=utcnow())
    assert upload.url.startswith("https://api.example.com/api/v1/artifact-files/")
    with pytest.raises(pydantic.ValidationError):
        settings.replace(public_url="api.example.com")
