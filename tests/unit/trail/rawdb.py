"""Raw PostgreSQL connections the tamper tests open; the ``trail`` fixture closes them."""

from __future__ import annotations

from typing import Any

OPEN: list[Any] = []
