"""The file store: objects in a folder of this host, reached through this server.

Clients upload and download at URLs this server answers (`url_base` + a token). A token is
what the URL grants (the action, the key, the declared size and SHA-256 or the download's
name and type, the expiry, who it was given to), signed with HMAC-SHA256 under a key kept in the folder
(`url-signing.key`, made at first use): every worker and process of the host shares it, and
nothing else needs configuring. A signature is compared in constant time; a tampered or
expired token is refused (`BadSignature`).

An upload is streamed to a temporary file in `incoming/`, hashed on the way and written in
batches off the event loop; only when its size and SHA-256 are the declared ones is it
renamed into `objects/`, its digest in a sidecar beside it (`KEY.sha256`). A process killed
mid-upload leaves a temporary file only, which `sweep_incoming` removes.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread

from sessions_api.core.stores.base import (
    BadSignature,
    ChecksumMismatch,
    Download,
    ListedObject,
    StoredObject,
    StoreUnavailable,
    TooLarge,
    Upload,
)
from sessions_api.core.timestamps import utcnow

_KEY_FILE = "url-signing.key"
_SIDECAR = ".sha256"
# Bytes gathered before one write-and-hash runs on a thread: few thread hops, bounded memory.
_BATCH = 1024 * 1024
_READ = 1024 * 1024
PUT, GET = "put", "get"


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    action: str
    key: str
    size: int = 0
    sha256: str = ""
    name: str = ""
    content_type: str = ""
    holder: str = ""  # who it was given to (ObjectStore.upload's `holder`)


class FileStore:
    kind = "file"

    def __init__(self, directory: str, *, url_base: str) -> None:
        self.root = Path(directory).resolve()
        self.objects = self.root / "objects"
        self.incoming = self.root / "incoming"
        self.url_base = url_base.rstrip("/")

    @functools.cached_property
    def _signing_key(self) -> bytes:
        """Read (or made) at first use: a server that never signs a URL leaves no folder behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _signing_key(self.root / _KEY_FILE)

    # -- URLs ---------------------------------------------------------------------------------

    def upload(
        self, key: str, *, size: int, sha256: str, content_type: str, expires_at: datetime, holder: str = ""
    ) -> Upload:
        token = self._sign({"a": PUT, "k": key, "s": size, "h": sha256, "e": _epoch_ms(expires_at), "o": holder})
        return Upload(f"{self.url_base}/{token}", "PUT", {"Content-Type": "application/octet-stream"}, expires_at)

    def download(self, key: str, *, name: str, content_type: str, expires_at: datetime, holder: str = "") -> Download:
        token = self._sign({"a": GET, "k": key, "n": name, "t": content_type, "e": _epoch_ms(expires_at), "o": holder})
        return Download(f"{self.url_base}/{token}", expires_at)

    def verified(self, token: str, action: str) -> Grant:
        """What `token` grants, if its signature is this store's and it has not expired."""
        payload, _, signature = token.partition(".")
        expected = _b64(hmac.new(self._signing_key, payload.encode("ascii", "replace"), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.encode(), signature.encode("ascii", "replace")):
            raise BadSignature("The URL's signature is not valid.")
        fields = json.loads(_unb64(payload))
        if fields.get("a") != action:
            raise BadSignature("The URL does not allow this method.")
        if fields["e"] <= _epoch_ms(utcnow()):
            raise BadSignature("The URL has expired.")
        return Grant(
            action,
            fields["k"],
            fields.get("s", 0),
            fields.get("h", ""),
            fields.get("n", ""),
            fields.get("t", ""),
            fields.get("o", ""),
        )

    def _sign(self, fields: dict[str, object]) -> str:
        payload = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{payload}.{_b64(hmac.new(self._signing_key, payload.encode(), hashlib.sha256).digest())}"

    # -- transfers ------------------------------------------------------------------------------

    async def receive(self, grant: Grant, chunks: AsyncIterable[bytes]) -> None:
        """Store the bytes of an upload `grant` allows. TooLarge past its size, ChecksumMismatch
        when they are not its bytes; either way nothing is stored.

        A pipeline: while one batch is hashed and written (on two threads at once: both release
        the GIL), the loop receives the next; at most two batches are held."""
        temporary = self.incoming / f"{uuid.uuid4().hex}.part"
        hasher = hashlib.sha256()
        received = 0
        batch = bytearray()
        in_flight: asyncio.Future[tuple[None, Any]] | None = None
        try:
            await anyio.to_thread.run_sync(functools.partial(self.incoming.mkdir, parents=True, exist_ok=True))
            file = await anyio.to_thread.run_sync(open, temporary, "wb")
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to {self.incoming}: {exc.strerror}") from exc
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > grant.size:
                    raise TooLarge(f"more than the {grant.size} bytes the upload declared")
                batch += chunk
                if len(batch) >= _BATCH:
                    if in_flight is not None:
                        await in_flight
                    in_flight, batch = _hash_and_write(file, hasher, batch), bytearray()
            if in_flight is not None:
                await in_flight
            await _hash_and_write(file, hasher, batch)
            if received != grant.size or hasher.hexdigest() != grant.sha256:
                raise ChecksumMismatch(
                    f"{received} bytes with SHA-256 {hasher.hexdigest()}, not the {grant.size} bytes declared"
                )
            await anyio.to_thread.run_sync(self._keep, file, temporary, grant)
        except OSError as exc:  # a disk full, a folder gone: nothing is kept
            raise StoreUnavailable(f"cannot keep the upload: {exc.strerror}") from exc
        finally:
            if in_flight is not None and not in_flight.done():
                await asyncio.wait([in_flight])  # a thread's write cannot be stopped: let it end
            await anyio.to_thread.run_sync(_discard, file, temporary)

    def _keep(self, file: object, temporary: Path, grant: Grant) -> None:
        """Make the verified temporary file the object: durable first, then renamed into place."""
        assert hasattr(file, "fileno")
        file.flush()  # type: ignore[attr-defined]
        os.fsync(file.fileno())
        target = self.path_of(grant.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target.with_name(target.name + _SIDECAR), grant.sha256.encode())
        os.replace(temporary, target)

    def path_of(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a key of this store: {key!r}")
        return self.objects / key

    # -- the data layer's calls -----------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        path = self.path_of(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        try:
            sha256 = path.with_name(path.name + _SIDECAR).read_text().strip() or None
        except FileNotFoundError:
            sha256 = None
        return StoredObject(size, sha256)

    def digest(self, key: str) -> str | None:
        hasher = hashlib.sha256()
        try:
            with self.path_of(key).open("rb") as file:
                while block := file.read(_READ):
                    hasher.update(block)
        except FileNotFoundError:
            return None
        return hasher.hexdigest()

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + _SIDECAR).unlink(missing_ok=True)

    def listing(self, prefix: str, *, after: str, limit: int) -> Sequence[ListedObject]:
        """Keys in order, read directory by directory; at most `limit` are returned, though a
        folder of many is listed whole (one folder per session, at most its artifacts)."""
        found: list[ListedObject] = []
        for directory, folders, files in os.walk(self.objects):  # nothing when it was never made
            folders.sort()
            for name in sorted(files):
                if name.endswith(_SIDECAR):
                    continue
                path = Path(directory) / name
                key = path.relative_to(self.objects).as_posix()
                if key.startswith(prefix) and key > after:
                    found.append(ListedObject(key))
                    if len(found) >= limit:
                        return found
        return found

    def sweep_incoming(self, older_than: timedelta) -> int:
        """Remove temporary files of uploads that stopped (a killed process) before `older_than`."""
        cutoff = (utcnow() - older_than).timestamp()
        removed = 0
        for path in self.incoming.glob("*.part") if self.incoming.is_dir() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _hash_and_write(file: object, hasher: hashlib._Hash, batch: bytearray) -> asyncio.Future[tuple[None, Any]]:
    """Hash and write `batch` on two threads at once (hashlib and file writes release the GIL
    over large buffers); the batches of one upload are hashed and written in order."""
    return asyncio.gather(
        anyio.to_thread.run_sync(hasher.update, batch),
        anyio.to_thread.run_sync(file.write, batch),  # type: ignore[attr-defined]
    )


def _discard(file: object, temporary: Path) -> None:
    file.close()  # type: ignore[attr-defined]
    temporary.unlink(missing_ok=True)


def _signing_key(path: Path) -> bytes:
    """The folder's URL-signing key, made once, atomically: the first of several processes to
    start writes it, the others read the same key."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    _write_atomically(path, secrets.token_bytes(32), replace=False)
    return path.read_bytes()


def _write_atomically(path: Path, content: bytes, *, replace: bool = True) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, content)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if another process made it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


def _epoch_ms(instant: datetime) -> int:
    # Milliseconds: whole seconds would end a URL up to a second before the expiresAt it is shown with.
    return int(instant.timestamp() * 1000)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise BadSignature("The URL's token is malformed.") from None
