#!/usr/bin/env python3
"""Medians of bench/remote-cache.sh's measurements, as Markdown tables.

    remote-cache-summary.py RESULTS.jsonl

Per example and tool: machine A's build + export (wall time, MB uploaded),
machine B's fully cached build (wall, MB downloaded, steps run), B again
after a one-file change, and a third empty machine C building the changed
context; bytes are request + response bodies as the counting proxy in front
of the registry saw them. Then strata/buildah ratios of the medians (below
1: strata is faster or moves less), and the base-image load times that were
left out of every figure.
"""
import json
import statistics
import sys
from collections import defaultdict

PHASES = ["A-export", "B-cached", "B-one-file", "C-one-file"]
ORDER = {"strata": 0, "strata-local": 1, "buildah": 2}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mb(b, fmt):
    return "-" if b is None else format(b / 1e6, fmt)


def main():
    runs = defaultdict(list)
    ids = defaultdict(dict)
    with open(sys.argv[1]) as fh:
        for line in fh:
            r = json.loads(line)
            runs[(r["example"], r["tool"], r["phase"])].append(r)
            ids[(r["example"], r["tool"], r["rep"])][r["phase"]] = r["id"]
    examples = list(dict.fromkeys(k[0] for k in runs))
    tools = sorted({k[1] for k in runs}, key=lambda t: ORDER.get(t, 9))

    def m(ex, tool, phase, f):
        return med([f(r) for r in runs.get((ex, tool, phase), [])])

    print("| example | tool | runs | A build+export s | A up MB | B cached s | B down MB | B ran "
          "| B one-file s | B one-file down MB | B one-file ran | C one-file s | C down MB | C ran "
          "| B = A image |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ex in examples:
        for t in tools:
            n = len(runs.get((ex, t, "A-export"), []))
            if not n:
                continue
            cells = [f"{m(ex, t, 'A-export', lambda r: r['wall']):.2f}",
                     mb(m(ex, t, 'A-export', lambda r: r['up']), ".2f")]
            for ph in PHASES[1:]:
                w = m(ex, t, ph, lambda r: r["wall"])
                if w is None:
                    cells += ["-", "-", "-"]
                    continue
                cells += [f"{w:.2f}", mb(m(ex, t, ph, lambda r: r['down']), ".3f"),
                          f"{m(ex, t, ph, lambda r: r['ran']):g}"]
            same = [v.get("A-export") == v.get("B-cached")
                    for (e, tt, _), v in ids.items() if e == ex and tt == t]
            print(f"| {ex} | {t} | {n} | " + " | ".join(cells) + f" | {sum(same)}/{len(same)} |")

    if "strata" in tools and "buildah" in tools:
        print()
        print("strata/buildah (medians; below 1: strata is faster or moves fewer bytes):")
        print()
        print("| example | A time | A up | B cached time | B cached down | B one-file time "
              "| B one-file down | C one-file time | C one-file down |")
        print("|---|---|---|---|---|---|---|---|---|")
        for ex in examples:
            cells = []
            for ph in PHASES:
                for f in (lambda r: r["wall"], lambda r: r["up"] if ph == "A-export" else r["down"]):
                    s, b = m(ex, "strata", ph, f), m(ex, "buildah", ph, f)
                    if s is None or b is None:
                        cells.append("-")
                    elif b == 0:
                        cells.append("0/0" if s == 0 else "inf")
                    else:
                        cells.append(f"{s / b:.2f}")
            print(f"| {ex} | " + " | ".join(cells) + " |")

    print()
    for ex in examples:
        for t in tools:
            b = m(ex, t, "A-export", lambda r: r["base_load"])
            if b is not None:
                print(f"{ex}/{t}: loading the base images into an empty store (not counted): "
                      f"median {b:.2f} s")


if __name__ == "__main__":
    main()
