"""Is audit logging really on, and does it really cover what matters: policy tooling and apiserver checks."""
