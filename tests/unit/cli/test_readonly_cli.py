"""Read-only commands on a store the user cannot write: a copy of the golden trail with a read-only
directory and files and a private key only root can read, used by `nobody` (the tests run as root,
and root ignores file modes, so the commands run in a subprocess that drops to nobody once Python
and kubetrail are loaded: the interpreter lives under /root, which nobody cannot enter)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import kubetrail

GOLDEN = Path(__file__).parents[2] / "data" / "trail"


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def _checkout_open_to_others() -> bool:
    """`nobody` reads kubetrail's package data (migrations) from the checkout at run time: every
    directory above it must let others through (not so under /root or in a `mktemp -d` directory)."""
    here = Path(kubetrail.__file__).resolve().parent
    return all(os.stat(p).st_mode & 0o001 for p in (here, *here.parents))


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or _nobody() is None, reason="needs root to run a subprocess as nobody"),
    pytest.mark.skipif(not _checkout_open_to_others(),
                       reason="the checkout lies in a directory closed to other users, so `nobody` cannot read "
                              "kubetrail's package data; clone it somewhere world-readable to run this test"),
]


@pytest.fixture
def readonly_data() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="kubetrail-ro-"))  # tmp_path's parents are closed to nobody
    try:
        base.chmod(0o755)
        data = base / "data"
        shutil.copytree(GOLDEN / "data", data)
        for p in data.iterdir():
            p.chmod(0o600 if p.name == "trail.key" else 0o444)
        data.chmod(0o555)
        yield data
    finally:
        shutil.rmtree(base)


_DROP = """
import os, sys, json
import kubetrail.cli, kubetrail.store.sqlite, kubetrail.store.sqlite_deep, kubetrail.store.sqlite_schema, encodings.idna
for _m in {{e.module for e in kubetrail.cli.COMMANDS.values()}} | {{"output", "resolve"}}:
    __import__("kubetrail.cli." + _m)  # commands load lazily; nobody cannot read the interpreter's files
import rich.console, rich.table, yaml
kubetrail.store.sqlite_schema.migrations()  # loads importlib.readers from under /root
import click._termui_impl, termios
os.setgroups([])
os.setgid({gid})
os.setuid({uid})
sys.argv = ["kubetrail"] + json.loads(sys.argv[1])
kubetrail.cli.main()
"""


def as_nobody(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    user = _nobody()
    assert user is not None
    code = _DROP.format(gid=user.pw_gid, uid=user.pw_uid)
    env = {**os.environ, "HOME": "/nonexistent"}
    return subprocess.run([sys.executable, "-c", code, orjson.dumps([*args, "--data", str(data)]).decode()],
                          capture_output=True, text=True, env=env, cwd="/", timeout=60)


def test_every_read_only_command_works_without_write_access(readonly_data: Path) -> None:
    before = sorted(os.listdir(readonly_data))
    r = as_nobody(readonly_data, "verify", "--json")
    assert r.returncode == 0 and orjson.loads(r.stdout)["size"] == 300, r.stderr  # with trail.vkey, not trail.key
    r = as_nobody(readonly_data, "verify", "--deep", "--json")
    assert r.returncode == 0, r.stderr
    r = as_nobody(readonly_data, "query", "--json", "--limit", "3")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stderr
    key = orjson.loads(r.stdout.splitlines()[0])["key"]
    for args in (["show", key], ["show", "7"], ["stats"], ["query", "--count"], ["checkpoint"],
                 ["proof", "inclusion", "--index", "3", "--json"], ["proof", "consistency", "--old", "64", "--json"],
                 ["creds", "list", "--json"], ["alerts", "--json"]):
        r = as_nobody(readonly_data, *args)
        assert r.returncode == 0, (args, r.stderr)
    r = as_nobody(readonly_data, "checkpoint", "--sign")  # writing is refused with one clear line
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert sorted(os.listdir(readonly_data)) == before  # no -wal, -shm or anything else was created
