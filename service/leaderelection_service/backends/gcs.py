"""Google Cloud Storage backend: one JSON object per key, every write guarded by
the object's generation.

Example::

    store = GcsStore.from_url("gs://my-bucket/leases", timeout=5.0)
    leases = CasLeases(store, clock_skew_allowance=0.5)

URL ``gs://bucket[/prefix]``. The key ``cron`` lives in the object
``prefix/cron`` (``cron`` without a prefix), its body the record as JSON. Keys
are checked against the contract's pattern here again before they become part
of an object name, and an object name is the prefix plus the key and nothing
else, so the names sort as the keys do and a listing is a key-ordered scan.

Every write is a compare-and-set on the object's generation, which GCS
decides with strong consistency:

1. read the object; its body is the record, its generation the version;
2. create with ``if_generation_match=0`` (the object must not exist), update
   with ``if_generation_match=<generation read>``;
3. a 412 means another writer won: ``WriteConflict``, and the lease rules read
   again and answer from the winner's record (never a retried success).

Release overwrites the object with a released record, which keeps the token
counter; metagenerations are never relied on. Delete removes a key's object
with ``if_generation_match=<generation read>``, after raising the token floor
(``token_floor.py``): the object ``prefix/.token-floor`` (no key starts with
``.``, so no listing shows it), ``{"floor": N}``, itself raised by a
generation-guarded write.

Credentials come from Google's standard discovery (``GOOGLE_APPLICATION_CREDENTIALS``,
the metadata server, ``gcloud auth application-default login``). With
``STORAGE_EMULATOR_HOST`` set the client talks to that emulator, anonymously.

The client library blocks, so each call runs in a worker thread. Each call
may take ``timeout`` seconds, retries included; it retries reads and the
generation-guarded writes on transient errors (429, 5xx, connection errors,
timeouts). A replayed write whose first attempt had landed fails its
precondition, and the rules read again and find their own write. Anything
the store cannot get from GCS in time is ``BackendUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.adapters import HTTPAdapter

from leaderelection_service.lease_errors import BackendUnavailable, LeaseError, WriteConflict
from leaderelection_service.records import LeaseRecord, valid_key
from leaderelection_service.storage import Capabilities, Versioned

log = logging.getLogger("leaderelection.gcs")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_POOL_SIZE = 64
"""HTTP connections kept per service process: as many as worker threads may
use at once, so concurrent requests do not open and drop connections."""
FLOOR_OBJECT = ".token-floor"
"""The token floor's object, beside the keys' (never a key: keys never start with ".")."""
_SCAN_CONCURRENCY = 16
"""Objects fetched at once while listing (one GET per record)."""


def parse_url(url: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → ``("bucket", "a/b")``; ``ValueError`` says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "gs":
        raise ValueError(f"not a gs:// URL: {url}")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"gs URL takes a bucket and a prefix only (gs://bucket/prefix): {url}")
    bucket = parts.netloc
    if (
        not _BUCKET_RE.fullmatch(bucket)
        or ".." in bucket
        or any(len(label) > 63 for label in bucket.split("."))
        or ("." not in bucket and len(bucket) > 63)
    ):
        raise ValueError(
            f"invalid bucket name {bucket!r} in {url}: 3-63 characters of a-z, 0-9, '-', '_' "
            "and '.', starting and ending with a letter or digit"
        )
    segments = [s for s in parts.path.split("/") if s]
    for seg in segments:
        if not _SEGMENT_RE.fullmatch(seg) or seg in (".", ".."):
            raise ValueError(
                f"invalid prefix segment {seg!r} in {url}: use A-Z, a-z, 0-9, '.', '_' and '-'"
            )
    return bucket, "/".join(segments)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """GCS failures as the contract's errors: 412 → ``WriteConflict``, the rest → 503."""
    try:
        yield
    except api_exceptions.PreconditionFailed as exc:
        raise WriteConflict(what) from exc
    except api_exceptions.NotFound as exc:
        # Objects that are absent are handled by the callers; this is the bucket.
        raise BackendUnavailable(f"GCS: {what}: bucket not found ({exc.message})") from exc
    except api_exceptions.RetryError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise BackendUnavailable(f"GCS: {what}: gave up retrying: {_short(cause)}") from exc
    except (
        api_exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
        OSError,
    ) as exc:
        raise BackendUnavailable(f"GCS: {what}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


class GcsStore:
    """A ``RecordStore`` over objects ``gs://bucket/prefix/<key>``."""

    capabilities = Capabilities(shared_across_hosts=True, change_notification=False)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        timeout: float = 5.0,
        client: storage.Client | None = None,
    ) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.description = f"gs://{bucket}/{prefix}".rstrip("/")
        self._timeout = timeout
        self._retry: Retry = DEFAULT_RETRY.with_delay(
            initial=0.05, maximum=1.0, multiplier=2.0
        ).with_timeout(timeout)
        self._client = client if client is not None else _new_client()
        _tune(self._client)
        self._bucket = self._client.bucket(bucket)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> GcsStore:
        bucket, prefix = parse_url(url)
        return cls(bucket, prefix, timeout=timeout)

    def object_name(self, key: str) -> str:
        if not valid_key(key):  # the HTTP layer checked already; never trust it here
            raise ValueError(f"invalid key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, name: str) -> str | None:
        base = f"{self.prefix}/" if self.prefix else ""
        key = name[len(base) :] if name.startswith(base) else None
        return key if key is not None and valid_key(key) else None

    # -- sync primitives, run in worker threads -------------------------------

    def _read_sync(self, key: str) -> Versioned | None:
        name = self.object_name(key)
        blob = self._bucket.blob(name)
        with _translated(f"read {name}"):
            try:
                # One GET: the body and, from its headers, the generation it belongs to.
                data = blob.download_as_bytes(retry=self._retry, timeout=self._timeout)
            except api_exceptions.NotFound:
                return None  # never written (a missing bucket shows on writes and ping)
        generation = blob.generation
        if generation is None:
            raise BackendUnavailable(f"GCS: read {name}: no generation in the answer")
        try:
            record = LeaseRecord.from_storage(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise LeaseError(f"the stored record of {key!r} is unreadable") from exc
        if record.key != key:
            raise LeaseError(f"the object of {key!r} holds the record of {record.key!r}")
        return Versioned(record, int(generation))

    def _bucket_exists(self) -> bool:
        """One listing call: needs only ``storage.objects.list``, as scans do."""
        with _translated(f"list gs://{self.bucket_name}"):
            try:
                blobs = self._client.list_blobs(
                    self._bucket, max_results=1, retry=self._retry, timeout=self._timeout
                )
                list(blobs)
            except api_exceptions.NotFound:
                return False
        return True

    def _write_sync(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        name = self.object_name(key)
        blob = self._bucket.blob(name)
        blob.cache_control = "no-store"
        payload = json.dumps(record.to_storage(), separators=(",", ":"))
        with _translated(f"write {name}"):
            # Every write carries a generation precondition, so a replay after a
            # lost answer can only fail with 412, never overwrite a newer record.
            blob.upload_from_string(
                payload,
                content_type="application/json",
                if_generation_match=0 if expected is None else expected,
                retry=self._retry,
                timeout=self._timeout,
            )
        if blob.generation is None:
            raise BackendUnavailable(f"GCS: write {name}: no generation in the answer")
        return int(blob.generation)

    def _list_sync(self, prefix: str, after: str | None, limit: int) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        start = base + after if after else None
        keys: list[str] = []
        with _translated(f"list gs://{self.bucket_name}/{base}{prefix}"):
            blobs = self._client.list_blobs(
                self._bucket,
                prefix=base + prefix,
                delimiter="/",  # objects below a deeper "/" are not leases
                start_offset=start,
                page_size=min(limit + 1, 1000),
                retry=self._retry,
                timeout=self._timeout,
            )
            for blob in blobs:
                key = self._key_of(blob.name)
                if key is None or (after is not None and key <= after):
                    continue
                keys.append(key)
                if len(keys) >= limit:
                    break
        return keys

    def _floor_name(self) -> str:
        return f"{self.prefix}/{FLOOR_OBJECT}" if self.prefix else FLOOR_OBJECT

    def _read_floor_sync(self) -> tuple[int, int]:
        """(floor, generation); (0, 0) when no delete ever raised it."""
        name = self._floor_name()
        blob = self._bucket.blob(name)
        with _translated(f"read {name}"):
            try:
                data = blob.download_as_bytes(retry=self._retry, timeout=self._timeout)
            except api_exceptions.NotFound:
                return 0, 0
        try:
            floor = int(json.loads(data)["floor"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(f"GCS: {name} is damaged") from exc
        return floor, int(blob.generation or 0)

    def _raise_floor_sync(self, at_least: int) -> None:
        name = self._floor_name()
        for _ in range(16):
            floor, generation = self._read_floor_sync()
            if floor >= at_least:
                return
            blob = self._bucket.blob(name)
            blob.cache_control = "no-store"
            try:
                with _translated(f"write {name}"):
                    blob.upload_from_string(
                        json.dumps({"floor": at_least}),
                        content_type="application/json",
                        if_generation_match=generation,
                        retry=self._retry,
                        timeout=self._timeout,
                    )
                return
            except WriteConflict:
                continue  # another delete raised it meanwhile: read again
        raise BackendUnavailable(f"GCS: {name}: contended; retry")

    def _delete_sync(self, key: str, expected: int) -> None:
        name = self.object_name(key)
        with _translated(f"delete {name}"):
            try:
                self._bucket.blob(name).delete(
                    if_generation_match=expected, retry=self._retry, timeout=self._timeout
                )
            except api_exceptions.NotFound:
                raise WriteConflict(key) from None

    # -- RecordStore -------------------------------------------------------------

    async def delete(self, key: str, expected: int) -> None:
        await anyio.to_thread.run_sync(self._delete_sync, key, expected)

    async def read_floor(self) -> int:
        floor, _ = await anyio.to_thread.run_sync(self._read_floor_sync)
        return floor

    async def raise_floor(self, at_least: int) -> None:
        await anyio.to_thread.run_sync(self._raise_floor_sync, at_least)

    async def read(self, key: str) -> Versioned | None:
        return await anyio.to_thread.run_sync(self._read_sync, key)

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        return await anyio.to_thread.run_sync(self._write_sync, key, record, expected)

    async def scan(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        keys = await anyio.to_thread.run_sync(self._list_sync, prefix, after, limit)
        gate = asyncio.Semaphore(_SCAN_CONCURRENCY)

        async def fetch(key: str) -> LeaseRecord | None:
            async with gate:
                try:
                    got = await self.read(key)
                except LeaseError as exc:
                    if isinstance(exc, BackendUnavailable):
                        raise
                    log.warning("skipping %s in a listing: %s", key, exc.message)
                    return None
            return got.record if got else None

        records = await asyncio.gather(*(fetch(k) for k in keys))
        return [r for r in records if r is not None]

    async def ping(self) -> None:
        def check() -> None:
            if not self._bucket_exists():
                raise BackendUnavailable(f"GCS: bucket gs://{self.bucket_name} does not exist")

        await anyio.to_thread.run_sync(check)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)


def _new_client() -> storage.Client:
    """A client from the standard credential discovery (anonymous on an emulator)."""
    try:
        client = storage.Client()
    except auth_exceptions.DefaultCredentialsError as exc:
        raise ValueError(
            "no Google Cloud credentials found for the gs:// backend: set "
            "GOOGLE_APPLICATION_CREDENTIALS, run on a host with a service account, or "
            "run `gcloud auth application-default login` "
            f"(or set STORAGE_EMULATOR_HOST for an emulator): {exc}"
        ) from exc
    return client


def _tune(client: storage.Client) -> None:
    """Keep connections reusable under concurrency and after errors.

    The pool holds as many connections as worker threads may use at once. Error
    bodies are read in full as they arrive: the library streams downloads and
    drops a failed response unread before it retries, which would otherwise
    strand its connection until garbage collection.
    """
    session: Any = client._http  # the client's requests session (private, stable)
    if not isinstance(session, requests.Session):
        return
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.hooks["response"].append(_drain_errors)


def _drain_errors(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code >= 400:
        response.content  # noqa: B018 - reading releases the connection to the pool
