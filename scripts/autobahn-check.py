#!/usr/bin/env python3
"""Reads an Autobahn|Testsuite fuzzingclient report (index.json) and judges it.

    python3 scripts/autobahn-check.py target/autobahn/reports/index.json

Prints one summary line, e.g.
    autobahn: 517 cases: 500 OK, 3 NON-STRICT, 14 UNIMPLEMENTED, 0 FAILED
then every case that is not OK with its behavior and close behavior. Exits 1 when any case's
`behavior` or `behaviorClose` is anything but OK or INFORMATIONAL (the suite says
INFORMATIONAL where the RFC leaves the choice to the implementation), and when the report
is missing or holds no case.
"""

import json
import sys
from collections import Counter
from pathlib import Path

ACCEPTED = ("OK", "INFORMATIONAL")
# Always shown in the summary, in this order; any other verdict follows.
SHOWN = ("OK", "NON-STRICT", "UNIMPLEMENTED", "FAILED")


def case_key(case_id):
    """'9.10.2' sorts after '9.2.1'."""
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def verdict(result):
    """A case's verdict: its behavior, or its close behavior when only that is wrong."""
    behavior = result.get("behavior", "MISSING")
    close = result.get("behaviorClose", "MISSING")
    if behavior in ACCEPTED and close not in ACCEPTED:
        return close
    return behavior


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} REPORTS/index.json", file=sys.stderr)
        return 2
    index = Path(argv[1])
    if not index.is_file():
        print(f"autobahn: FAILED: no report at {index}", file=sys.stderr)
        return 1
    agents = json.loads(index.read_text())
    cases = [(agent, cid, r) for agent, results in agents.items() for cid, r in results.items()]
    if not cases:
        print(f"autobahn: FAILED: {index} holds no case", file=sys.stderr)
        return 1
    several = len(agents) > 1

    counts = Counter(verdict(r) for _, _, r in cases)
    parts = [f"{counts.get(v, 0)} {v}" for v in SHOWN]
    parts += [f"{n} {v}" for v, n in sorted(counts.items()) if v not in SHOWN]
    print(f"autobahn: {len(cases)} cases: {', '.join(parts)}")

    bad = [
        (agent, cid, r)
        for agent, cid, r in sorted(cases, key=lambda c: (c[0], case_key(c[1])))
        if r.get("behavior") not in ACCEPTED or r.get("behaviorClose") not in ACCEPTED
    ]
    for agent, cid, r in bad:
        name = f"{agent} {cid}" if several else cid
        code = r.get("remoteCloseCode")
        report = index.parent / r.get("reportfile", "").replace(".json", ".html")
        print(
            f"  {name:<10} {r.get('behavior', 'MISSING'):<14}"
            f" close {r.get('behaviorClose', 'MISSING')}"
            f" (peer close code {code}, {r.get('duration', '?')} ms)  {report}"
        )
    if bad:
        print(
            f"autobahn: {len(bad)} of {len(cases)} cases are not OK (reports in {index.parent})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
