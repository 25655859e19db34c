"""The credential inventory: every client certificate and token the audit trail shows, who made it,
who approved it, where it was used, and what is risky about it (docs/credentials.md).

Data flow, per stored record, in ``consumer.CredentialConsumer.apply``::

    record ─► inventory.handle  (csr.py: CSR create/approve/issue; tokens.py: TokenRequest, legacy and
              │                  bootstrap Secrets; revocations; cluster-admin bindings)
              ├► link.link       (credential-id, legacy annotation, bootstrap user, or identity+time)
              └► flags.evaluate  (risk flags of the credentials this record changed)
    ledger.py keeps it all in the store (migration 0004); report.py reads it for `kubetrail creds`;
    pem.py decodes CSRs and certificates; model.py is the stored document.
"""
