"""Several writers on one trail: a writer about to sign must not take another writer's append and
signature, landing between its two pre-checks, for a store that lost entries ("refusing to sign: the
store holds 60 entries but signed a checkpoint of size 80" from four `kubetrail ingest` starting
together, reported on the board). The interleaving is forced here, on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import open_store
from kubetrail.testing import make_event
from kubetrail.trail.checkpointer import sign_now
from kubetrail.trail.keys import ensure_signer
from kubetrail.trail.tree import sync_hook


def batch(start: int, n: int) -> list[Any]:
    return [to_record(Decoded(make_event(f"race-{i}"), "event", f"r:{i}"), SourceRef(stream="race"))
            for i in range(start, start + n)]


class Interleaved:
    """The store as one writer sees it, with another writer's append and signature run right after
    the first of its reads of the trail's sizes."""

    def __init__(self, store: Any, other: Any, signer: Any) -> None:
        self._store, self._other, self._signer, self._fired = store, other, signer, False
        outer = self

        class Trail:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(outer._store.trail, name)
                if name not in ("entries_size", "signed_size"):
                    return attr

                def read() -> Any:
                    value = attr()
                    if not outer._fired:
                        outer._fired = True
                        outer._other.append(batch(1000, 20))
                        sign_now(outer._other, outer._signer)
                    return value
                return read

        self.trail = Trail()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_another_writers_signature_between_the_checks_is_no_refusal(tmp_path: Path, store_url: str) -> None:
    data = str(tmp_path / "keys")
    signer = ensure_signer(data, lambda _m: None)
    a, b = open_store(store_url, data_dir=data), open_store(store_url, data_dir=data)
    try:
        for s in (a, b):
            s.append_hooks.append(sync_hook)
        a.append(batch(0, 60))
        sign_now(a, signer)
        cp, _ = sign_now(Interleaved(a, b, signer), signer)  # type: ignore[arg-type]
        assert cp.size == 80 and a.trail.signed_size() == 80
    finally:
        a.close()
        b.close()
