"""Detection and delivery settings: ``DATA/detect.yaml`` (optional; every key has a default).

Example::

    rules: [/etc/kubetrail/extra_rules.yaml]   # loaded after the built-in ruleset
    disable: ["K8s * Created"]                   # detector ids (wildcards) or tags to turn off
    exceptions: [{rule: "K8s Identity Used From New Source IP", name: vpn, fields: [source_ip],
                  comps: [startswith], values: [["10.8."]]}]   # alerts/tuning.py
    suppress: {window_secs: 86400, by: [subject]}               # aggregation: alerts/route.py
    match: all                                   # all | first
    min_priority: debug
    rate_limit: {max_alerts: 20, window_secs: 600}
    stateful: {learning_secs: 3600, silence_secs: 900}
    sinks:
      - {name: file, type: jsonl, path: /var/log/kubetrail/alerts.jsonl}
      - {name: ops, type: slack, url_env: SLACK_WEBHOOK_URL, min_priority: warning}
      - {name: am, type: alertmanager, url: "http://alertmanager:9093"}
      - {name: hook, type: webhook, url_file: /etc/kubetrail/hook-url, headers_env: {Authorization: HOOK_AUTH}}

Sink URLs of Slack and webhooks are secrets. They may be written inline, but ``url_env`` /
``url_file`` keep them out of the data directory; kubetrail itself never writes a URL anywhere
(the outbox stores the sink *name*).
"""

from __future__ import annotations

import ipaddress
import os
import re

import msgspec
import yaml

from kubetrail.alerts.alert import PRIORITIES
from kubetrail.alerts.tuning import DetectorException, check_exceptions
from kubetrail.errors import ConfigError

CONFIG_FILE = "detect.yaml"
SECTION = "detect"  # the same settings in the config file's detect: section


class _Sink(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    name: str
    min_priority: str = "debug"


class StdoutSinkConfig(_Sink, tag="stdout"):
    pass


class JsonlSinkConfig(_Sink, tag="jsonl"):
    path: str


class _HttpSink(_Sink, frozen=True, kw_only=True):
    url: str = ""
    url_env: str = ""
    url_file: str = ""
    timeout_secs: float = 5.0
    headers_env: dict[str, str] = {}  # header name -> environment variable holding its value

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        if self.url_env:
            value = os.environ.get(self.url_env, "")
            if not value:
                raise ConfigError(f"sinks.{self.name}.url_env", f"environment variable {self.url_env} is not set")
            return value.strip()
        if self.url_file:
            try:
                with open(self.url_file, encoding="utf-8") as fh:
                    return fh.read().strip()
            except OSError as exc:
                raise ConfigError(f"sinks.{self.name}.url_file", str(exc)) from exc
        raise ConfigError(f"sinks.{self.name}", "one of url, url_env or url_file is required")

    def headers(self) -> dict[str, str]:
        return {h: os.environ.get(env, "") for h, env in self.headers_env.items()}


class WebhookSinkConfig(_HttpSink, tag="webhook"):
    pass


class SlackSinkConfig(_HttpSink, tag="slack"):
    pass


class AlertmanagerSinkConfig(_HttpSink, tag="alertmanager"):
    generator_url: str = ""  # link shown in Alertmanager (e.g. a kubetrail web UI)


SinkConfig = StdoutSinkConfig | JsonlSinkConfig | WebhookSinkConfig | SlackSinkConfig | AlertmanagerSinkConfig


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_alerts: int = 20  # per rule and subject in each window; more are folded into the last one
    window_secs: float = 600.0


class Suppression(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One detector's aggregation; unset keys inherit ``suppress.by``/``suppress.window_secs``."""

    by: list[str] | None = None
    window_secs: float | None = None


# Built-in per-rule grouping: rules about a credential aggregate per credential, not per user.
BUILTIN_SUPPRESS = {
    "Legacy Service Account Token Used": Suppression(by=["credential"]),
    "Stale Bound Token Used": Suppression(by=["credential"]),
}
GROUP_FIELDS = ("subject", "credential", "source_ip", "user_agent", "namespace", "name", "resource", "verb")


class SuppressConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Alert aggregation (Elastic-style suppression): one alert per detector, group-by values and
    event-time window; later occurrences fold into it (docs/alerts.md, "Aggregation")."""

    window_secs: float = 86400.0  # 0: no aggregation (one alert per request)
    by: list[str] = msgspec.field(default_factory=lambda: ["subject"])
    rules: dict[str, Suppression] = {}

    def for_rule(self, rule: str) -> tuple[list[str], float]:
        """(group-by fields, window seconds) for one detector's rule name."""
        own = self.rules.get(rule) or BUILTIN_SUPPRESS.get(rule) or Suppression()
        by = own.by if own.by is not None else self.by
        window = own.window_secs if own.window_secs is not None else self.window_secs
        return by, window


class StatefulConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    learning_secs: float = 3600.0  # first-seen detectors stay quiet this long after their first event
    silence_secs: float = 900.0  # audit silence: no event from a source for this long
    denied_burst: int = 10  # 401/403 per identity or IP …
    denied_window_secs: float = 60.0
    discovery_kinds: int = 5  # distinct resource types listed/read by one identity …
    discovery_window_secs: float = 60.0
    delete_burst: int = 10  # destructive deletes by one identity …
    delete_window_secs: float = 60.0
    secrets_read: int = 15  # distinct secrets read by one identity …
    secrets_window_secs: float = 1800.0
    sequence_window_secs: float = 300.0  # CSR create -> approve, RBAC change -> workload change
    trusted_cidrs: list[str] = []  # D71: NAT gateways, egress proxies: a pod token from here is not "elsewhere"
    image_allow: list[str] = []  # D23: image repositories (prefixes, e.g. "registry.corp/") never alerted as new
    transit_grace_secs: float = 60.0  # a seq gap not declared by the agent is alerted once open this long


class DetectSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules: list[str] = []
    disable: list[str] = []
    match: str = "all"
    min_priority: str = "debug"
    rate_limit: RateLimit = RateLimit()
    # Detection runs in event-time order behind a watermark this far behind the newest event
    # (ordering.py): the apiserver's webhook batching (30 s) and its five attempts (≈4 min).
    allowed_lateness_secs: float = 300.0
    suppress: SuppressConfig = SuppressConfig()
    exceptions: list[DetectorException] = []
    stateful: StatefulConfig = StatefulConfig()
    sinks: list[SinkConfig] = []

    def sink(self, name: str) -> SinkConfig | None:
        return next((s for s in self.sinks if s.name == name), None)


def load_settings(data_dir: str) -> DetectSettings:
    """``DATA/detect.yaml`` if present, else the defaults (no sinks: alerts are only stored)."""
    path = os.path.join(data_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return DetectSettings()
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("", f"{path}: {exc}") from exc
    return parse_settings(data, path)


_PATH_IN_MSG = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")


def at(origin: str, key: str) -> str:
    """Where a problem is: ``detect.yaml: suppress.by[0]`` in the file, ``detect.suppress.by[0]`` in the
    config file's ``detect:`` section (``origin`` is then the section's name)."""
    return f"{origin}.{key}" if origin == SECTION else f"{origin}: {key}"


def key_path_error(exc: msgspec.ValidationError, origin: str) -> ConfigError:
    """msgspec's message as ``origin: key.path: problem`` (``rate_limit.max_alerts: Expected `int`…``)."""
    msg = str(exc)
    m = _PATH_IN_MSG.search(msg)
    where = m.group("path").lstrip(".") if m else ""
    where = re.sub(r"\.?\[(\d+)\]", r"[\1]", where)
    text = _PATH_IN_MSG.sub("", msg)
    unknown = _UNKNOWN.match(text)
    if unknown:
        where = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        text = "unknown key (see docs/config.md for the keys detection takes)"
    return ConfigError(at(origin, f"{where}") if where else origin, text)


def _check_group_by(fields: list[str], where: str) -> None:
    for i, name in enumerate(fields):
        if name not in GROUP_FIELDS and not (name.startswith("fields.") and len(name) > 7):
            raise ConfigError(f"{where}[{i}]", f"unknown group-by field {name!r} (one of {', '.join(GROUP_FIELDS)}, "
                              "or fields.NAME for a field of the alert)")


def _check_suppress(s: SuppressConfig, origin: str) -> None:
    if s.window_secs < 0:
        raise ConfigError(at(origin, "suppress.window_secs"), "must be 0 (no aggregation) or more")
    _check_group_by(s.by, at(origin, "suppress.by"))
    for name, rule in s.rules.items():
        if rule.window_secs is not None and rule.window_secs < 0:
            raise ConfigError(at(origin, f"suppress.rules.{name}.window_secs"), "must be 0 (no aggregation) or more")
        if rule.by is not None:
            _check_group_by(rule.by, at(origin, f"suppress.rules.{name}.by"))


def parse_settings(data: object, origin: str = CONFIG_FILE) -> DetectSettings:
    try:
        settings = msgspec.convert(data, DetectSettings, strict=True)
    except msgspec.ValidationError as exc:
        raise key_path_error(exc, origin) from exc
    return check_settings(settings, origin)


def check_settings(settings: DetectSettings, origin: str = CONFIG_FILE) -> DetectSettings:
    """What the types cannot say (unique sink names, known priorities, CIDRs, group-by fields …);
    errors name the key. The catalog checks the detector names (``detect/catalog.py``)."""
    _check_suppress(settings.suppress, origin)
    check_exceptions(settings.exceptions, origin)
    names = [s.name for s in settings.sinks]
    if len(set(names)) != len(names):
        raise ConfigError(at(origin, "sinks"), "sink names must be unique")
    if not 0 <= settings.allowed_lateness_secs <= 86400:
        raise ConfigError(at(origin, "allowed_lateness_secs"), "must be between 0 and 86400 seconds")
    if settings.match not in ("all", "first"):
        raise ConfigError(at(origin, "match"), "must be 'all' or 'first'")
    known = {p.lower() for p in PRIORITIES} | {"info"}
    if settings.min_priority.strip().lower() not in known:
        raise ConfigError(at(origin, "min_priority"), f"unknown priority {settings.min_priority!r}")
    for s in settings.sinks:
        if s.min_priority.strip().lower() not in known:
            raise ConfigError(at(origin, f"sinks.{s.name}.min_priority"), f"unknown priority {s.min_priority!r} "
                              f"(one of {', '.join(p.lower() for p in PRIORITIES)})")
        if isinstance(s, _HttpSink) and sum(bool(x) for x in (s.url, s.url_env, s.url_file)) != 1:
            raise ConfigError(at(origin, f"sinks.{s.name}"), f"a {type(s).__name__.removesuffix('SinkConfig').lower()} "
                              "sink needs exactly one of url, url_env or url_file")
    for i, cidr in enumerate(settings.stateful.trusted_cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ConfigError(at(origin, f"stateful.trusted_cidrs[{i}]"), str(exc)) from exc
    return settings
