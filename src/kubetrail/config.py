"""The config file (YAML): typed, frozen, unknown keys rejected, errors naming the exact key path.

Example (every key is documented in docs/config.md)::

    data_dir: /var/lib/kubetrail
    cluster: prod-eu-1
    checkpoint_interval_secs: 60
    sources:
      - type: audit_file
        path: /var/log/kubernetes/audit/audit.log
      - type: audit_webhook
        listen_address: 0.0.0.0:8443
        tls_cert_file: /etc/kubetrail/tls.crt
        tls_key_file: /etc/kubetrail/tls.key
        client_ca_file: /etc/kubetrail/apiserver-ca.crt

A source's ``type`` names its module in ``kubetrail.sources``; ``SourceConfig`` below is the whole
registry of source types. ``buffer``/``sink`` make ``kubetrail agent`` ship through the node's WAL to
a broker, ``source`` is what ``kubetrail collector`` reads (docs/transport.md).

``${NAME}`` in a string value is replaced by the environment variable NAME when the file is loaded
(an unset variable is an error naming the key): one ConfigMap serves every node of a DaemonSet,
each pod filling in its own ``node: ${NODE_NAME}`` from the downward API. ``$${`` is a literal ``${``.

The node agent's sources (``cri_logs``, ``journald``, ``textfile``,
``k8s_events``) and its ``enrich:``/``redact:`` sections are read by ``kubetrail agent`` and
``kubetrail run`` alike (docs/agent.md)::

    sources:
      - {type: cri_logs, root: /var/log/pods, node: node-a}
      - {type: journald, directory: /var/log/journal, units: [kubelet.service]}
      - {type: textfile, path: /var/log/auth.log}
      - {type: k8s_events}
    enrich: {in_cluster: true, node: node-a, tombstone_secs: 600}
    redact: {patterns: [{name: card, regex: '[0-9]{16}'}]}
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec
import yaml

from kubetrail.alerts.config import CONFIG_FILE as DETECT_FILE
from kubetrail.alerts.config import SECTION, DetectSettings, check_settings
from kubetrail.buffer import BufferConfig
from kubetrail.errors import ConfigError
from kubetrail.sinks.kafka import KafkaSinkConfig
from kubetrail.sinks.nats import NatsSinkConfig
from kubetrail.sources.audit_file import AuditFileConfig
from kubetrail.sources.audit_webhook import AuditWebhookConfig
from kubetrail.sources.cri_logs import CriLogsConfig
from kubetrail.sources.journald import JournaldConfig
from kubetrail.sources.k8s_events import K8sEventsConfig
from kubetrail.sources.kafka import KafkaSourceConfig
from kubetrail.sources.nats import NatsSourceConfig
from kubetrail.sources.textfile import TextfileConfig
from kubetrail.stages.enrich import EnrichConfig
from kubetrail.stages.redact_lines import RedactConfig

SourceConfig = (AuditFileConfig | AuditWebhookConfig | CriLogsConfig | JournaldConfig | TextfileConfig
                | K8sEventsConfig)
LOG_SOURCES = (CriLogsConfig, JournaldConfig, TextfileConfig, K8sEventsConfig)
# The agent's broker sink (no ``sink`` = the embedded store) and the collector's broker source.
SinkConfig = NatsSinkConfig | KafkaSinkConfig
BrokerSourceConfig = NatsSourceConfig | KafkaSourceConfig


class DetectConfig(DetectSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``detect:``: ``enabled``, and the detection settings ``DATA/detect.yaml`` would hold (the same
    keys; one place or the other, not both: docs/config.md)."""

    enabled: bool = True

    def settings(self) -> DetectSettings | None:
        """The detection settings this section gives, or None when it gives none."""
        given = DetectSettings(**{f: getattr(self, f) for f in DetectSettings.__struct_fields__})
        return None if given == DetectSettings() else given


class TelemetryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``telemetry:``: where ``/healthz`` and ``/metrics`` are served (none when empty)."""

    listen_address: str = ""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = "./kubetrail-data"
    store: str | None = None  # sqlite:///PATH.db | postgresql://…; default: DATA_DIR/kubetrail.db
    cluster: str = ""
    sources: list[SourceConfig] = []
    checkpoint_interval_secs: float = 60.0
    witness_dir: str | None = None
    # The key of redaction digests (default DATA/redaction.key): one file shared by every agent and
    # collector of a deployment, so one event redacted in two places lists the same digests.
    redaction_key_file: str | None = None
    detect: DetectConfig = DetectConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    buffer: BufferConfig | None = None  # agent with a sink: the node's disk WAL
    sink: SinkConfig | None = None  # agent: where the WAL ships to
    source: BrokerSourceConfig | None = None  # collector: the broker it reads
    enrich: EnrichConfig | None = None
    redact: RedactConfig = RedactConfig()
    # ``run`` (and an agent without a sink): > 0 runs detection and credentials in a process of their
    # own beside the writer (kubetrail/consumer_process.py); None: by the CPU count (workers.py)
    workers: int | None = None


_PATH_IN_MSG = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")

# Fields that must name an existing file when they are set.
_FILE_FIELDS = ("tls_cert_file", "tls_key_file", "client_ca_file", "bearer_token_file")


def _where(path: str) -> str:
    return path[1:] if path.startswith(".") else path


def parse(data: Any, origin: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{origin}: the top level must be a mapping, not {type(data).__name__}")
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = _PATH_IN_MSG.search(msg)
        where = _where(m.group("path")) if m else ""
        text = _PATH_IN_MSG.sub("", msg)
        unknown = _UNKNOWN.match(text)
        if unknown:
            where = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            text = "unknown key (see docs/config.md for the keys this section takes)"
        raise ConfigError(where, text) from exc
    _check(config)
    return config


def _check(config: Config) -> None:
    if config.checkpoint_interval_secs <= 0:
        raise ConfigError("checkpoint_interval_secs", "must be greater than 0")
    if config.workers is not None and config.workers < 0:
        raise ConfigError("workers", "must be 0 or more")
    detect = config.detect.settings()
    if detect is not None:
        check_settings(detect, SECTION)
        both = os.path.join(config.data_dir, DETECT_FILE)
        if os.path.exists(both):
            raise ConfigError(SECTION, f"{both} also holds detection settings: keep them in one place")
    listen = config.telemetry.listen_address
    if listen and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}", listen):
        raise ConfigError("telemetry.listen_address", f"{listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9090")
    for name in ("buffer", "sink", "source"):
        part = getattr(config, name)
        for where, problem in part.problems() if part is not None else []:
            raise ConfigError(f"{name}.{where}" if where else name, problem)
    for i, src in enumerate(config.sources):
        if isinstance(src, AuditFileConfig):
            parent = os.path.dirname(os.path.abspath(src.path))
            if not os.path.isdir(parent):
                raise ConfigError(f"sources[{i}].path", f"no such directory {parent!r}")
            if src.poll_ms <= 0 or src.max_batch_bytes <= 0:
                raise ConfigError(f"sources[{i}]", "poll_ms and max_batch_bytes must be greater than 0")
        if isinstance(src, AuditWebhookConfig | CriLogsConfig | JournaldConfig | TextfileConfig):
            for where, problem in src.problems():
                raise ConfigError(f"sources[{i}].{where}" if where else f"sources[{i}]", problem)
        for field in _FILE_FIELDS:
            value = getattr(src, field, None)
            if value and not os.path.isfile(value):
                raise ConfigError(f"sources[{i}].{field}", f"no such file {value!r}")


    for section, problems in (("enrich", config.enrich.problems() if config.enrich else []),
                              ("redact", config.redact.problems())):
        for where, problem in problems:
            raise ConfigError(f"{section}.{where}", problem)
    if config.enrich and config.enrich.kubeconfig and not os.path.isfile(config.enrich.kubeconfig):
        raise ConfigError("enrich.kubeconfig", f"no such file {config.enrich.kubeconfig!r}")


_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, where: str = "") -> Any:
    """``data`` with ``${NAME}`` in every string replaced from the environment (see the module doc)."""
    if isinstance(data, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "${"
        value = os.environ.get(m.group(1))
        if value is None:
            raise ConfigError(where, f"environment variable {m.group(1)} is not set")
        return value

    return _ENV_REF.sub(sub, data)


def load(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError("", f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: not valid YAML: {exc}") from exc
    return parse(expand_env(data), path)


def with_node(config: Config, node: str) -> Config:
    """``config`` with ``node`` filled in wherever a source or ``enrich`` left it empty (a DaemonSet
    passes its node's name once, from the downward API, instead of templating the file)."""
    if not node:
        return config
    sources = [msgspec.structs.replace(s, node=node) if hasattr(s, "node") and not s.node else s
               for s in config.sources]
    enrich = config.enrich
    if enrich is not None and not enrich.node:
        enrich = msgspec.structs.replace(enrich, node=node)
    return msgspec.structs.replace(config, sources=sources, enrich=enrich)
