"""kubetrail: the logging and monitoring a Kubernetes cluster needs (OWASP K10)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetrail.record import AuditMeta, Batch, Record, Redaction, SourceRef

__all__ = ["AuditMeta", "Batch", "Record", "Redaction", "SourceRef", "__version__"]
__version__ = "0.1.0"

_RECORD_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    """``kubetrail.Record`` and the other record types, imported at first use (PEP 562): every
    ``kubetrail.*`` import runs this package first, and ``kubetrail --help`` or ``completion`` need
    no record (``record.py`` brings msgspec: ~20 ms of their start-up)."""
    if name not in _RECORD_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from kubetrail import record

    value = getattr(record, name)
    globals()[name] = value
    return value
