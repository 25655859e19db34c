"""redact_lines: the shapes secrets take in log lines, configurable patterns, and the counts."""

from __future__ import annotations

import pytest

from kubetrail.stages.redact_lines import PatternConfig, RedactConfig, RedactLines

ALSO = {"authorization": {"auth-credential"}, "secret-pair": {"credential-pair"}}
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06YWRtaW4ifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(("line", "secret", "what"), [
    ("GET /api Authorization: Bearer abcdef0123456789 200", "abcdef0123456789", "authorization"),
    ('{"headers": {"authorization": "Basic dXNlcjpwYXNz"}}', "dXNlcjpwYXNz", "authorization"),
    ("connecting with password=hunter2 to db", "hunter2", "secret-pair"),
    ("token: s3cr3t-t0k3n", "s3cr3t-t0k3n", "secret-pair"),
    ("api_key=AKIAKTDEMO7PLANTED42&x=1", "AKIAKTDEMO7PLANTED42", "secret-pair"),
    (f"using token {JWT} now", JWT, "jwt"),
    ("-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "private-key"),
    ("MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun", "MIIEowIBAAKCAQEAu1SU1L", "pem-body-line"),
])
def test_secret_shapes_are_removed_and_named(line: str, secret: str, what: str) -> None:
    """The value is gone, the rest of the line stays readable, the detector is named and counted."""
    r = RedactLines()
    out, found = r(line)
    assert secret not in out and "[redacted]" in out
    # the event detectors (stages/redact.py) know some of these shapes too; whichever runs first names it
    names = {what} | ALSO.get(what, set())
    assert len(found) == 1 and found[0].what in names and r.counts[found[0].what] == 1


@pytest.mark.parametrize("line", [
    "pulled image sha256:" + "ab" * 32,
    "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
    "GET /healthz 200 1ms",
    "password policy updated",
])
def test_ordinary_lines_are_kept(line: str) -> None:
    """Digests, plain words next to 'password', and normal lines pass untouched."""
    assert RedactLines()(line) == (line, [])


def test_configured_patterns_whole_match_or_secret_group() -> None:
    """A pattern replaces its whole match, or only its `secret` group."""
    r = RedactLines(RedactConfig(patterns=[PatternConfig(name="card", regex=r"\b\d{16}\b"),
                                           PatternConfig(name="session", regex=r"sid=(?P<secret>\w+)")]))
    out, found = r("paid with 4111111111111111 sid=abc123")
    assert out == "paid with [redacted] sid=[redacted]"
    assert sorted(x.what for x in found) == ["card", "session"]
    assert RedactConfig(patterns=[PatternConfig(name="bad", regex="(")]).problems()
