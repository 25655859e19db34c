"""kubetrail: the logging and monitoring a Kubernetes cluster needs (OWASP K10)."""

from kubetrail.record import AuditMeta, Batch, Record, Redaction, SourceRef

__all__ = ["AuditMeta", "Batch", "Record", "Redaction", "SourceRef", "__version__"]
__version__ = "0.1.0"
