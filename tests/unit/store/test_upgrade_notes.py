"""``sqlite_schema.upgrade_notes``, which both engines' ``migrate`` report an upgrade through: silent for a
fresh store, one line per migration and a closing line with the time for a store that holds entries."""

from __future__ import annotations

from kubetrail.store.sqlite_schema import upgrade_notes


def test_a_fresh_store_is_silent_and_an_upgrade_is_reported() -> None:
    said: list[str] = []
    fresh = upgrade_notes(0, said.append)
    fresh("0001_core.sql")
    fresh(None)
    assert said == []
    upgrade = upgrade_notes(1_234_567, said.append)
    upgrade("0015_credential_uses_outliers.sql")
    upgrade("0016_integer_heads.sql")
    upgrade(None)
    assert said[:2] == ["kubetrail: upgrading the store (1,234,567 entries): migration 0015_credential_uses_outliers.sql",
                        "kubetrail: upgrading the store (1,234,567 entries): migration 0016_integer_heads.sql"]
    assert said[2].startswith("kubetrail: store upgraded (2 migrations) in ") and said[2].endswith(" s")
    nothing_ran = upgrade_notes(10, said.append)  # another process applied them under the lock first
    nothing_ran(None)
    assert len(said) == 3
