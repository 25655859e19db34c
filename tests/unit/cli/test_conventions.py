"""Every command follows docs/cli.md's conventions, including the commands added after this test.

The walk starts at the registry (`kubetrail.cli.COMMANDS`), so a new command is checked the day it
is registered: it needs help text, `--data` if it touches stored data, `--json` if it prints data,
and `-o` if it lists rows. Where a convention truly does not apply, the command is named below
with the reason. The second half runs the bad values the CLI must refuse with one line and a
non-zero status instead of doing something surprising.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.cli.output import FORMATS

GOLDEN = Path(__file__).parents[2] / "data" / "trail" / "data"

# Commands that read no stored data, so they have no --data.
NO_DATA = {
    "completion": "prints a shell script",
    "policy generate": "prints a policy file",
    "policy lint": "reads a policy file",
    "policy simulate": "reads a policy and event files",
    "policy explain": "reads a policy file",
    "check apiserver": "reads a manifest, command line or cloud description",
    "rules lint": "reads rule files",
    "rules test": "reads rule and event files",
    "rules list": "reads rule files",
    "webhook-config": "prints a kubeconfig for the apiserver",
    "deploy apiserver": "writes manifests into --out",
    "run": "the data directory is in --config (`--data` overrides it, checked below)",
}
# Commands that print no data (a file, a script, a server's log lines), so they have no --json.
NO_JSON = {
    "completion": "prints a shell script",
    "policy generate": "prints a policy file (YAML is the data)",
    "webhook-config": "prints a kubeconfig (YAML is the data)",
    "deploy apiserver": "writes files; prints where they went",
    "demo": "a guided tour for people; every step it shows has its own --json command",
    "run": "a server: logs to stderr until stopped",
    "collector": "a server: logs to stderr until stopped",
    "agent": "a server (the node agent): logs to stderr until stopped",
    "webhook serve": "a server: logs to stderr until stopped",
    "serve": "a server (the dashboard and API); its JSON is /api/v1 (docs/web.md)",
    "keys generate": "prints the verifier key, which `keys show --json` also gives",
}
# Listings: commands that print rows of one kind. They take -o table|wide|json|yaml (and --json).
LISTINGS = {"query", "timeline", "alerts", "detect", "alerts sinks", "creds list", "rules list", "rules test"}


def walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        full = f"{prefix}{name}"
        if isinstance(command, click.Group) and not command.invoke_without_command:
            out.extend(walk(command, full + " "))
        else:
            out.append((full, command))
            if isinstance(command, click.Group):
                out.extend(walk(command, full + " "))
    return out


COMMANDS = walk(cli)


def options(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}


def test_the_exemptions_name_real_commands() -> None:
    names = {n for n, _ in COMMANDS}
    assert set(NO_DATA) <= names and set(NO_JSON) <= names and names >= LISTINGS


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_conventions(name: str, command: click.Command) -> None:
    opts = options(command)
    assert command.help and command.get_short_help_str(1000), f"{name}: no help text"
    if name not in NO_DATA:
        assert "--data" in opts, f"`kubetrail {name}` reads or writes stored data but has no --data"
    if name not in NO_JSON:
        assert "--json" in opts, f"`kubetrail {name}` prints data but has no --json"
    if name in LISTINGS:
        assert {"-o", "--output"} <= opts, f"`kubetrail {name}` lists rows but has no -o"
    if "-o" in opts:
        param = next(p for p in command.params if "-o" in p.opts)
        assert isinstance(param.type, click.Choice) and tuple(param.type.choices) == FORMATS
    r = CliRunner().invoke(cli, [*name.split(), "-h"], prog_name="kubetrail")
    assert r.exit_code == 0 and f"kubetrail {name}" in r.stdout


def test_run_takes_data_to_override_the_config() -> None:
    assert "--data" in options(dict(COMMANDS)["run"])


# ---- bad values: one line on stderr, a non-zero status, nothing done ---------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("conv")
    shutil.copytree(GOLDEN, base / "data")
    return str(base / "data")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two self-signed certificates made with `cryptography`: a.crt/a.key and b.key (a key of another pair)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    base = tmp_path_factory.mktemp("tls")
    out = {}
    for name in ("a", "b"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        (base / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (base / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        out[name] = str(base / name)
    (base / "tokens").write_text("s3cret,apiserver\n")
    out["tokens"] = str(base / "tokens")
    return out


def refused(args: list[str], status: int, words: str) -> None:
    r = CliRunner().invoke(cli, args, prog_name="kubetrail")
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == status, (args, r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and words in lines[-1], (args, r.stderr)
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("args", "status", "words"), [
    (["alerts", "--min-priority", "urgent"], 2, "'urgent' is not one of"),
    (["rules", "test", "--events", "x.json", "--min-priority", "loud"], 2, "'loud' is not one of"),
    (["creds", "list", "--active", "--expired"], 2, "--active and --expired exclude each other"),
    (["query", "--limit", "0"], 2, "--limit"),
    (["query", "--since", "yesterday"], 2, "--since"),
    (["query", "-o", "xml"], 2, "'xml' is not one of"),
    (["query", "--json", "-o", "yaml"], 2, "disagree"),
    (["query", "--stage", "Done"], 2, "'Done' is not one of"),
    (["show", "zz"], 2, "neither a record key"),
    (["show", "99999"], 2, "no stored record"),
    (["alerts", "show", "999999"], 2, "no alert 999999"),
    (["creds", "show", "nothing-like-this"], 2, "no credential"),
    (["nosuchcommand"], 2, "No such command"),
])
def test_bad_values_are_one_line_errors(data: str, args: list[str], status: int, words: str) -> None:
    refused([*args, "--data", data] if args[0] not in ("rules", "nosuchcommand") else args, status, words)


def test_a_sink_without_its_url_is_refused(data: str) -> None:
    (Path(data) / "detect.yaml").write_text("sinks:\n  - {type: webhook, name: soc}\n")
    try:
        refused(["alerts", "sinks", "--data", data], 2, "needs exactly one of url, url_env or url_file")
    finally:
        (Path(data) / "detect.yaml").unlink()


def test_ingest_of_a_directory_with_nothing_to_read(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.md").write_text("# not events\n")
    refused(["ingest", str(tmp_path / "in"), "--data", str(tmp_path / "d")], 2, "no file to read")
    assert not (tmp_path / "d").exists()


def write_config(path: Path, body: str) -> str:
    path.write_text(f"data_dir: {path.parent / 'run-data'}\n{body}")
    return str(path)


def test_run_with_no_sources(tmp_path: Path) -> None:
    refused(["run", "--config", write_config(tmp_path / "c.yaml", "sources: []\n")], 2, "no sources configured")


def webhook_source(port: int, cert: str, key: str, tokens: str) -> str:
    return (f"sources:\n  - type: audit_webhook\n    listen_address: 127.0.0.1:{port}\n"
            f"    tls_cert_file: {cert}\n    tls_key_file: {key}\n    bearer_token_file: {tokens}\n")


def test_run_fails_fast_on_a_port_in_use(tmp_path: Path, tls: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "c.yaml", webhook_source(port, tls["a"] + ".crt", tls["a"] + ".key",
                                                                  tls["tokens"]))
        refused(["run", "--config", config], 3, "Address already in use")


def test_run_and_serve_fail_fast_on_a_key_that_does_not_match(tmp_path: Path, tls: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.yaml", webhook_source(0, tls["a"] + ".crt", tls["b"] + ".key",
                                                              tls["tokens"]))
    refused(["run", "--config", config], 3, "cannot load tls_cert_file/tls_key_file")
    refused(["webhook", "serve", "--listen", "127.0.0.1:0", "--tls-cert", tls["a"] + ".crt", "--tls-key",
             tls["b"] + ".key", "--token-file", tls["tokens"], "--data", str(tmp_path / "w")], 3,
            "cannot load tls_cert_file/tls_key_file")
