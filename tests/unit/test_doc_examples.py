"""Every shell example in README.md and docs/ runs, and prints what the docs say it prints.

How the docs mark their examples (docs/cli.md "Examples in these docs"):

* a fenced ``sh`` block is run line by line (a trailing ``\\`` continues a line) in a copy of a
  workspace built once per session: ``kubetrail-data/`` holds the demo's store (the default
  ``--data``), ``demo-audit.log`` the demo's raw audit log. Each command must exit 0, or the
  status written after it as ``# exit: N`` (a pipeline's status is its last command's, as in any
  shell). The blocks of one file share their workspace, in order.
* a fenced ``console`` block is ``$ command`` lines, each followed by the output it prints;
  a line ``...`` stands for any number of lines, and a line ending in ``...`` for any line that
  starts with what precedes it.
* a block that cannot run here (it needs a cluster, root or a cloud account) carries
  ``<!-- not-run: the reason -->`` on the line before its fence; a file whose examples another test
  runs says so in its first lines with ``<!-- docs-test: tests/…/test_x.py -->``.
* a bare fence that holds shell commands fails the test: label it ``sh`` or mark it not run.

Inline examples (`` `kubetrail …` `` in prose and tables) are checked too: the command exists and
takes every ``--flag`` written after it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from kubetrail.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = {"sh", "console", "bash", "shell"}
NOT_RUN = re.compile(r"^<!-- not-run: (\S.*\S) -->$")
RUN_BY = re.compile(r"<!-- docs-test: (tests/\S+\.py)[^>]*-->")
EXIT = re.compile(r"\s+#\s*exit:\s*(\d+)\s*$")
LOOKS_LIKE_SHELL = re.compile(r"^(\$ |kubetrail |make |kubectl |sudo |curl |python3? |openssl |jq )")
TIMEOUT = 120


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence
    lang: str
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    out: list[Block] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i, m.group(2), []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(m.group(1)):])
            i += 1
        before = lines[start - 1].strip() if start else ""
        marker = NOT_RUN.match(before)
        out.append(Block(doc, start + 1, lang, "\n".join(body), marker.group(1) if marker else None))
        i += 1
    return out


def commands(text: str) -> list[tuple[str, int]]:
    """(command, expected status) for each line of an ``sh`` block; ``\\`` continues a line and a
    here-document (``<<'EOF'`` … ``EOF``) belongs to the line that opens it."""
    out, current, heredoc = [], "", ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if heredoc:
            current += "\n" + line
            if line == heredoc:
                out.append((current, 0))
                current, heredoc = "", ""
            continue
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        m = re.search(r"<<-?\s*'?(\w+)'?", line)
        if m and not line.endswith("\\"):
            current += line
            heredoc = m.group(1)
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        m = EXIT.search(current)
        out.append((EXIT.sub("", current) if m else current, int(m.group(1)) if m else 0))
        current = ""
    return out


def console(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` line of a ``console`` block."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def matches(expected: list[str], got: list[str]) -> bool:
    """Line by line, trailing blanks ignored; a ``...`` line matches any run of lines, a line ending
    in ``...`` any line with that start."""
    exp = [e.rstrip() for e in expected]
    have = [g.rstrip() for g in got]
    while exp and not exp[-1]:
        exp.pop()
    while have and not have[-1]:
        have.pop()

    def go(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(have)
        if exp[i] == "...":
            return any(go(i + 1, k) for k in range(j, len(have) + 1))
        same = exp[i] == have[j] if j < len(have) else False
        if j < len(have) and not same and exp[i].endswith("...") and len(exp[i]) > 3:
            same = have[j].startswith(exp[i][:-3])  # `ok: 2519 entries ...`: the rest of the line varies
        return same and go(i + 1, j + 1)

    return go(0, 0)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store and raw log, built once; each doc runs in its own copy."""
    ws = tmp_path_factory.mktemp("docs-ws")
    subprocess.run([sys.executable, "-m", "kubetrail", "demo", "--data", str(ws / "kubetrail-data"), "--log",
                    str(ws / "demo-audit.log")], check=True, capture_output=True, cwd=ws, timeout=600)
    return ws


def environment(ws: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETRAIL_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
               COLUMNS="100", HOME=str(ws), KUBETRAIL_SRC=str(ROOT))
    if os.environ.get("KUBETRAIL_SHARED"):
        env["KUBETRAIL_SHARED"] = os.environ["KUBETRAIL_SHARED"]
    return env


def run(cmd: str, ws: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], cwd=ws, env=environment(ws), capture_output=True,
                          text=True, timeout=TIMEOUT)


def run_by_another_test(doc: Path) -> str | None:
    m = RUN_BY.search("\n".join(doc.read_text().splitlines()[:5]))
    if m:
        assert (ROOT / m.group(1)).is_file(), f"{doc.name} names {m.group(1)}, which does not exist"
        assert doc.name in (ROOT / m.group(1)).read_text(), f"{m.group(1)} does not read {doc.name}"
        return m.group(1)
    return None


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_example_runs(doc: Path, workspace: Path, tmp_path: Path) -> None:
    if run_by_another_test(doc):
        return
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    problems: list[str] = []
    for b in blocks(doc):
        if b.lang not in SHELL:
            first = next((ln for ln in b.text.splitlines() if ln.strip() and not ln.startswith("#")), "")
            if not b.lang and LOOKS_LIKE_SHELL.match(first) and b.not_run is None:
                problems.append(f"{b.where}: a bare fence holding shell commands: label it ```sh (runnable) "
                                "or mark it <!-- not-run: reason -->")
            continue
        if b.not_run is not None:
            continue
        if b.lang == "console":
            for cmd, expected in console(b.text):
                r = run(cmd, ws)
                if r.returncode != 0 or not matches(expected, r.stdout.splitlines()):
                    problems.append(f"{b.where}: `{cmd}` exited {r.returncode}; expected\n"
                                    + "\n".join(expected) + "\n--- got\n" + r.stdout + r.stderr[-800:])
            continue
        for cmd, status in commands(b.text):
            r = run(cmd, ws)
            if r.returncode != status:
                problems.append(f"{b.where}: `{cmd}` exited {r.returncode}, the docs say {status}:\n"
                                f"{(r.stderr or r.stdout)[-800:]}")
            if "Traceback" in r.stderr:
                problems.append(f"{b.where}: `{cmd}` printed a traceback:\n{r.stderr[-800:]}")
    assert not problems, "\n\n".join(problems)


# ---- inline examples --------------------------------------------------------------------------

INLINE = re.compile(r"`(kubetrail(?: [^`]*)?)`")
# Commands other issues are adding right now, which docs may already name. Each entry goes when
# its command is registered (the test below fails until it does).
PENDING: dict[str, str] = {}


def resolve(words: list[str]) -> tuple[click.Command, list[str]] | str:
    """The command a `kubetrail …` example names, and the words after it; or why it names none."""
    command: click.Command = cli
    path = ["kubetrail"]
    rest = list(words)
    while rest and isinstance(command, click.Group):
        word = rest[0]
        if word.startswith("-") or not re.match(r"^[a-z][a-z-]*$", word):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            if command is cli and word in PENDING:
                return command, []
            if command is cli or not getattr(command, "invoke_without_command", False):
                return f"`{' '.join(path)} {word}` is not a command"
            break
        command, path = sub, [*path, word]
        rest.pop(0)
    return command, rest


def flags(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*getattr(p, "opts", []), *getattr(p, "secondary_opts", []))} | \
        {"--help", "-h"}


def inline_problems(doc: Path) -> list[str]:
    problems = []
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for m in INLINE.finditer(text):
        try:
            words = shlex.split(re.sub(r"[\[\]()|…\\]", " ", m.group(1)))[1:]
        except ValueError:
            words = re.sub(r"[\[\]()|…\\]", " ", m.group(1)).split()[1:]
        found = resolve(words)
        if isinstance(found, str):
            problems.append(f"{doc.relative_to(ROOT)}: {found} (in `{m.group(1)}`)")
            continue
        command, rest = found
        if command is cli and rest == [] and m.group(1).split()[1:2] and m.group(1).split()[1] in PENDING:
            continue
        known = flags(command)
        if isinstance(command, click.Group):  # `kubetrail proof … --json`: a flag of any subcommand
            for name in command.list_commands(click.Context(command)):
                sub = command.get_command(click.Context(command), name)
                known |= flags(sub) if sub is not None else set()
        parents = flags(cli)
        for w in rest:
            flag = w.split("=", 1)[0]
            if flag.startswith("-") and flag not in known and flag not in parents and flag != "-":
                problems.append(f"{doc.relative_to(ROOT)}: `kubetrail … {flag}` is not an option of "
                                f"`{command.name}` (in `{m.group(1)}`)")
    return problems


def test_pending_commands_are_still_pending() -> None:
    landed = [name for name in PENDING if name in cli.commands]
    assert not landed, f"{landed} landed: remove them from PENDING in this test"


def test_inline_examples_name_real_commands_and_flags() -> None:
    problems = [p for doc in DOCS for p in inline_problems(doc)]
    assert not problems, "\n".join(problems)


def test_user_docs_link_no_internal_notes() -> None:
    assert not (ROOT / "docs" / "TEAM-BRIEF.md").exists()
    for doc in DOCS:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)]+)\)", text):
            assert "shared/" not in target and "coord/" not in target and not target.startswith("/work"), \
                f"{doc.relative_to(ROOT)} links to {target}: user docs link only into the repository"
        assert "/work/" not in text, f"{doc.relative_to(ROOT)} names a path of the development machine"
