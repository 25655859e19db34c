"""The record key of a log line (docs/specs/log-line-identity.md): where it was read plus what it says.

    key = hex(SHA-256("kubetrail-log-key/v1\\n" kind "\\n" origin "\\n" offset "\\n" stream "\\n"
                      time "\\n" hex(SHA-256(body))))

``origin`` names the line's source stably across restarts, rotation and gzip (``cri:<ns>_<pod>_<uid>/
<container>/<n>.log``, ``file:<node>:<path>:<dev>:<ino>``, ``journald:<__CURSOR>``, ``k8s_event:<uid>``);
``offset`` is the byte offset of the line's first part in its file (0 where there is none); ``time``
is the event time in ns ("" when unknown); ``body`` is the *redacted* text, so the key never hashes a
secret. Re-reading the same bytes after a crash gives the same key, so the store refuses them.
"""

from __future__ import annotations

import hashlib

LOG_KEY_VERSION = b"kubetrail-log-key/v1\n"


def log_key(kind: str, origin: str, offset: int, stream: str, time_ns: int | None, body: bytes) -> str:
    h = hashlib.sha256(LOG_KEY_VERSION)
    h.update(f"{kind}\n{origin}\n{offset}\n{stream}\n{'' if time_ns is None else time_ns}\n".encode(
        "utf-8", "surrogateescape"))
    h.update(hashlib.sha256(body).hexdigest().encode())
    return h.hexdigest()
