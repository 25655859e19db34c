"""The bundled demo: a realistic, seeded audit log of a small cluster with an attack inside it.

``scenario.generate()`` builds it; ``kubetrail demo`` (``kubetrail.cli.demo``) writes it to the data
directory, ingests it through the real pipeline and summarises what kubetrail found. The modules,
in the order the log is made: ``model`` (identities, Events, stages), ``policy`` (the demo cluster's
audit policy and the level it gives each request), ``pki`` (CA, CSRs, certificates, JWTs),
``objects`` (request/response bodies), ``cluster`` (who is who), ``workloads`` and ``background``
(ordinary traffic), ``attack`` (the timeline), ``scenario`` (putting it together), ``timeline``
(finding the attack again in the store).
"""

from kubetrail.demo.scenario import DEFAULT_EVENTS, DEFAULT_SEED, Scenario, generate, write_log

__all__ = ["DEFAULT_EVENTS", "DEFAULT_SEED", "Scenario", "generate", "write_log"]
