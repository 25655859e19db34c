"""`kubetrail ingest`: files in (the questions are `cli/query.py`)."""

from __future__ import annotations

import os
import sys

import click
import orjson

from kubetrail.cli.exitcodes import FINDINGS, exit_with
from kubetrail.cli.options import json_option, store_options
from kubetrail.cli.output import sinks_off_stdout
from kubetrail.errors import InputError
from kubetrail.record import SourceRef, printable

PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--cluster", default="", help="Cluster name recorded as the events' source.")
@click.option("--stream", default="", help="Source stream label (default: the file name).")
@click.option("--no-detect", is_flag=True, help="Store only; run no detection.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that decode, redact and key events for the one writer; with 3 CPUs or more "
                   "detection and credentials then run in a process of their own, on 2 the workers run the "
                   "rules (0: all in this process; default: one per CPU for 16 MiB of files or more, else 0).")
@json_option
@store_options
def ingest(paths: tuple[str, ...], cluster: str, stream: str, no_detect: bool, no_progress: bool,
           workers: int | None, as_json: bool, data_dir: str, location: str) -> None:
    """Read audit events from files, directories, .gz files or - (stdin), in any delivery format.

    Exits 0 when everything was stored (or already was), 1 when some input was rejected: the
    rejects are listed with their position and reason in DATA/rejects.jsonl.
    """
    from kubetrail.pipeline import Options, open_pipeline
    from kubetrail.sources.files import SKIP_IN_DIRS, Input, expand_paths

    files = expand_paths(paths)
    for path in paths:
        if path != "-" and os.path.isdir(path) and not expand_paths([path]):
            raise InputError(f"{path}: no file to read in this directory (hidden files and {', '.join(SKIP_IN_DIRS)} "
                             "are skipped); name the files to read them anyway")
    from kubetrail.workers import default_workers

    total = sum(os.path.getsize(p) for p in files if p != "-")
    pipe = open_pipeline(Options(data_dir=data_dir, store=location, cluster=cluster, detect=not no_detect,
                                 workers=default_workers(total) if workers is None else workers))
    show = not no_progress and sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES
    # held until the pipeline has closed: its outbox delivers (to a stdout sink, too) on close
    with sinks_off_stdout(as_json):
        try:
            with click.progressbar(length=max(total, 1), label="ingesting", file=sys.stderr, hidden=not show) as bar:
                for path in files:
                    inp = Input(path)
                    # a file name that is not UTF-8 is escaped here, once, not per record
                    source = SourceRef(cluster=cluster, node="", stream=printable(stream or f"file:{path}"))
                    last = 0

                    def tick(_n: int, inp: Input = inp) -> None:
                        nonlocal last
                        pos = inp.tell()
                        bar.update(max(pos - last, 0))
                        last = pos

                    try:
                        pipe.ingest_input(inp, source, progress=tick)
                    finally:
                        inp.close()
        finally:
            pipe.close()
            pipe.store.close()
    s = pipe.summary
    if as_json:
        click.echo(orjson.dumps({"read": s.read, "stored": s.stored, "duplicates": s.duplicates,
                                 "rejected": s.rejected, "seconds": round(s.seconds, 3)}).decode())
    else:
        click.echo(s.line())
    if s.rejected:
        click.echo(f"rejected input is listed with position and reason in {data_dir}/rejects.jsonl", err=True)
    if s.rejected:
        exit_with(FINDINGS)


commands: list[click.Command] = [ingest]
