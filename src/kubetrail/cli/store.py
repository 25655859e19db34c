"""``kubetrail store``: maintenance of the store itself (``rekey`` after a key-version upgrade)."""

from __future__ import annotations

import click
import orjson

from kubetrail.cli.options import json_option, store_options
from kubetrail.stages.identity import event_key
from kubetrail.store import open_store
from kubetrail.store.rekey import pending, rekey


def _current_key(body: bytes) -> str | None:
    """The current record key of a stored body (None when it no longer parses as an event)."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return event_key(event) if isinstance(event, dict) else None


@click.group("store")
def store_group() -> None:
    """Maintain the store (re-key entries stored under an older key version)."""


@store_group.command("rekey")
@json_option
@store_options
def rekey_command(as_json: bool, data_dir: str, location: str) -> None:
    """Give entries stored under record key v1 their v2 key as an alias, recorded in the trail.

    Old leaves stay exactly as they are; an old event delivered again is still a duplicate.
    Safe to interrupt and run again.
    """
    store = open_store(location, data_dir=data_dir, create=False)
    try:
        todo = pending(store)
        result = rekey(store, _current_key)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps({**{f: getattr(result, f) for f in result.__struct_fields__}}).decode())
        return
    if not result.done:
        click.echo("nothing to re-key: every entry has a current (v2) key")
        return
    first = todo[0] if todo else 0
    click.echo(f"re-keyed entries {first}..{result.entries - 1}: {result.aliases} aliases, "
               f"{result.stored_twice} stored twice under v1 (kept, the alias points to the first), "
               f"{result.without_body} without a body (pruned: cannot be re-keyed); "
               f"recorded as trail leaf {result.marker_leaf} (aliases sha256 {result.aliases_sha256[:16]}…)")


commands: list[click.Command] = [store_group]
