"""Shared test fixtures: where the public fixtures live, a fresh data dir, a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrail.store import Store
from kubetrail.testing import fixtures_dir

FIXTURES = fixtures_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not FIXTURES.is_dir():
        skip = pytest.mark.skip(reason=f"public fixtures not found at {FIXTURES} (set KUBETRAIL_SHARED)")
        for item in items:
            if "needs_fixtures" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


# -- a throwaway PostgreSQL server (Debian's postgresql: initdb into a temp dir, a unix socket) ------

class PostgresServer:
    """One server per test session; each test gets its own schema (``url(name)``)."""

    def __init__(self) -> None:
        import os
        import shutil
        import subprocess
        import tempfile

        bindir = _pg_bindir()
        self.base = tempfile.mkdtemp(prefix="kubetrail-pg-")  # short: a socket path is at most 107 bytes
        self._user: dict[str, int] = {}
        if os.geteuid() == 0:  # initdb refuses root: run the server as the package's postgres user
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid}
        data = os.path.join(self.base, "data")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=120, **self._user)  # noqa: E731
        run(os.path.join(bindir, "initdb"), "-D", data, "-U", "kubetrail", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--locale=C")
        opts = (f"-k {self.base} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB")
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(self.base, "log"),
            "-w", "-t", "60", "start")
        self._stop = lambda: run(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        self._rm = lambda: shutil.rmtree(self.base, ignore_errors=True)
        self.admin_url = f"postgresql://kubetrail@/postgres?host={self.base}"
        self._n = 0

    def url(self, schema: str | None = None) -> str:
        """A fresh, empty schema of its own (``options=-csearch_path``)."""
        import psycopg

        self._n += 1
        schema = schema or f"t{self._n}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"postgresql://kubetrail@/postgres?host={self.base}&options=-csearch_path%3D{schema}"

    def close(self) -> None:
        try:
            self._stop()
        finally:
            self._rm()


def _pg_bindir() -> str:
    import glob
    import os
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    raise FileNotFoundError("pg_ctl")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    import os

    try:
        server = PostgresServer()
    except (FileNotFoundError, KeyError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed in CI (apt-get install postgresql): {exc}")
        pytest.skip(f"no PostgreSQL server binaries here ({exc}): install Debian's postgresql")
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both engines: a sqlite:/// URL in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store/kubetrail.db"
    server = request.getfixturevalue("postgres_server")
    return server.url()


class EngineStores:
    """Stores on one engine for the tests' data directories: SQLite in the directory itself, or a
    fresh PostgreSQL schema per directory (the directory still holds keys and detect.yaml)."""

    def __init__(self, name: str, server: PostgresServer | None) -> None:
        self.name = name
        self._server = server
        self._urls: dict[str, str] = {}

    def location(self, data_dir: str) -> str:
        if self._server is None:
            return data_dir
        if data_dir not in self._urls:
            self._urls[data_dir] = self._server.url()
        return self._urls[data_dir]

    def open(self, data_dir: str, **kw: bool) -> Store:
        from kubetrail.store import open_store

        return open_store(self.location(data_dir), data_dir=data_dir, **kw)

    def args(self, data_dir: str) -> list[str]:
        """The CLI flags that reach this store."""
        loc = self.location(data_dir)
        return ["--data", data_dir, *(["--store", loc] if loc != data_dir else [])]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> EngineStores:
    """The same test on both engines, for tests that open stores by data directory."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return EngineStores(request.param, server)
