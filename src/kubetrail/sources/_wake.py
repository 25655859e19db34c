"""Wake a polling source early when a directory changes (inotify where available).

inotify is only a hint: it misses events on some filesystems (overlay, NFS) and after a queue
overflow, so every source still polls; the hint only makes a new pod's first line arrive in
milliseconds instead of one poll interval later.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inotify_simple import INotify

log = logging.getLogger("kubetrail.sources.wake")


class Wake:
    """``wait(secs)`` returns early when a watched directory sees a change."""

    def __init__(self, enabled: bool = True) -> None:
        self._ino: INotify | None = None
        self._watched: dict[str, int] = {}
        if not enabled:
            return
        # imported here, by a source that starts watching: the config imports this module in every
        # command, and inotify_simple (with ctypes) is ~3 ms of start-up that ``ingest`` never uses
        try:  # pragma: no cover - the import succeeds wherever the dependency is installed
            from inotify_simple import INotify
        except ImportError:  # pragma: no cover
            return
        try:
            self._ino = INotify()
        except OSError as exc:  # inotify limits reached: polling alone still works
            log.info("inotify unavailable (%s); polling only", exc)

    @property
    def active(self) -> bool:
        return self._ino is not None

    def watch(self, directory: str) -> None:
        if self._ino is None or directory in self._watched:
            return
        from inotify_simple import flags as _flags  # loaded already: ``_ino`` is an INotify

        mask = (_flags.CREATE | _flags.MODIFY | _flags.MOVED_TO | _flags.MOVED_FROM | _flags.DELETE
                | _flags.CLOSE_WRITE)
        with contextlib.suppress(OSError):  # gone already, or the watch limit: the poll covers it
            self._watched[directory] = self._ino.add_watch(directory, mask)

    def forget(self, directory: str) -> None:
        wd = self._watched.pop(directory, None)
        if wd is not None and self._ino is not None:
            with contextlib.suppress(OSError):
                self._ino.rm_watch(wd)

    def wait(self, secs: float, stop: threading.Event) -> None:
        if self._ino is None:
            stop.wait(secs)
            return
        ready, _, _ = select.select([self._ino.fileno()], [], [], secs)
        if ready:
            self._ino.read(timeout=0)

    def close(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None
