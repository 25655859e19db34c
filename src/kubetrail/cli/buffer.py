"""`kubetrail buffer status [--json]`: what the node's WAL holds, read without disturbing the agent."""

from __future__ import annotations

import os

import click
import msgspec
import orjson

from kubetrail.errors import InputError


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@click.group()
def buffer() -> None:
    """The agent's disk WAL (the node buffer between the sources and the broker)."""


@buffer.command()
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="The agent's config: the WAL is `buffer.dir` (default DATA_DIR/buffer).")
@click.option("--dir", "wal_dir", default=None, help="The WAL directory itself (instead of --config).")
@click.option("--data", "data_dir", default=None,
              help="The agent's data_dir (the WAL is DATA/buffer unless the config's buffer.dir says otherwise).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the text line.")
def status(config_path: str | None, wal_dir: str | None, data_dir: str | None, as_json: bool) -> None:
    """Bytes on disk, records not yet acknowledged by the broker, the oldest one's age, quarantine."""
    from kubetrail.buffer import inspect

    max_bytes, when_full = 0, ""
    if wal_dir is None:
        if config_path is None and data_dir is None:
            raise click.UsageError("give --config FILE, --data DIR or --dir DIR")
        from kubetrail.buffer import BufferConfig
        from kubetrail.config import load, parse

        config = load(config_path) if config_path else parse({})
        buf = config.buffer or BufferConfig()
        wal_dir = buf.dir or os.path.join(data_dir or config.data_dir, "buffer")
        if config_path:
            max_bytes, when_full = buf.max_bytes, buf.when_full
    try:
        st = inspect(wal_dir, max_bytes, when_full)
    except FileNotFoundError as exc:
        raise InputError(f"no WAL in {wal_dir} (has the agent run with a sink?)") from exc
    if as_json:
        doc = msgspec.to_builtins(st)
        doc.pop("dropped_records", None)
        click.echo(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode())
        return
    age = "none waiting" if st.oldest_record_age_secs is None else f"oldest {st.oldest_record_age_secs:.1f}s old"
    cap = f" of {_human(st.max_bytes)}" if st.max_bytes else ""
    click.echo(f"WAL {st.dir}: {_human(st.bytes)}{cap} in {st.segments} segment(s), {st.records} record(s) "
               f"not yet acknowledged ({age}), {st.quarantined_segments} quarantined "
               f"({_human(st.quarantined_bytes)})")


commands: list[click.Command] = [buffer]
