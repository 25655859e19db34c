#!/usr/bin/env python3
"""Write benign-traffic regression corpora: a quiet cluster's audit log per Kubernetes version and platform.

    .venv/bin/python scripts/make_benign_corpus.py OUT_DIR [--corpus kubeadm-1.20 …] [--seed S] [--minutes M]

One file per corpus, ``OUT_DIR/<platform>-<version>.log`` (Event JSON lines). Without ``--corpus`` every
corpus of ``kubetrail.demo.quiet.profiles.CORPORA`` is written. The same arguments write the same bytes;
the regression test (tests/unit/detect/test_benign_corpus.py) generates them itself and requires that
kubetrail raises no alert on any of them.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from kubetrail.demo.quiet import CORPORA, generate, parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write the corpora into")
    parser.add_argument("--corpus", action="append", default=[],
                        help="PLATFORM-VERSION, e.g. kubeadm-1.20, eks-1.29 (repeatable; default: all)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--minutes", type=float, default=30.0, help="how much traffic (default 30)")
    args = parser.parse_args(argv)
    try:
        profiles = [parse(name) for name in args.corpus] or list(CORPORA)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    for profile in profiles:
        events = generate(profile, seed=args.seed, duration=args.minutes * 60)
        path = os.path.join(args.out_dir, f"{profile.name}.log")
        with open(path, "wb") as fh:
            fh.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
        print(f"wrote {len(events)} events to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
