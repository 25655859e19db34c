#!/usr/bin/env python3
"""Write the bundled demo scenario's audit log (Event JSON lines) to a file.

    .venv/bin/python scripts/make_demo_log.py demo-audit.log [--seed S] [--events N] [--policy FILE]

The same seed and size always write the same bytes. The file is what an apiserver would write under
the demo cluster's (leaky) audit policy: it contains the scenario's fake Secret values and tokens in
clear, which is what `kubetrail ingest` must redact. `kubetrail demo` generates the same log itself.
"""

from __future__ import annotations

import argparse
import sys

from kubetrail.demo.scenario import DEFAULT_EVENTS, DEFAULT_SEED, generate, write_log, write_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="where to write the audit log")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="at least this many events")
    parser.add_argument("--policy", help="also write the demo cluster's audit policy here")
    args = parser.parse_args(argv)
    scenario = generate(seed=args.seed, events=args.events)
    n = write_log(args.path, scenario)
    if args.policy:
        write_policy(args.policy)
    f = scenario.facts
    print(f"wrote {n} events to {args.path} (seed {args.seed}); attacker {f.attacker_ips[0]}, "
          f"token used from {f.attacker_ips[1]}, certificate {f.cert_credential_id}, token JTI={f.token_jti}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
