#!/usr/bin/env python3
"""Medians of bench/compare.sh's measurements, as a Markdown table.

    summary.py RESULTS.jsonl

One row per (row, case, tool): median wall time, CPU (user + sys), peak
RSS, system calls and bytes written over the repetitions, and for peers
the ratio of strata's median wall time to theirs (below 1: strata is
faster). The machine limits (reading, hashing and gzipping the context
once on every core) are listed with strata's cold time over them.
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = {"strata": 0, "buildah": 1, "docker": 2}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    runs = defaultdict(list)
    limits = {}
    with open(sys.argv[1]) as fh:
        for line in fh:
            r = json.loads(line)
            parts = r["label"].split("/")
            if parts[1] == "limit":
                limits[parts[0]] = r["limit"]
                continue
            row, case, tool, _rep = parts
            runs[(row, case, tool)].append(r)
    cases = sorted({(row, case) for row, case, _ in runs}, key=lambda k: (int(k[0]), k[1]))
    print("| row | case | tool | runs | wall s | CPU s | peak RSS MB | syscalls | written MB | strata/tool |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row, case in cases:
        tools = sorted({t for r_, c, t in runs if (r_, c) == (row, case)}, key=lambda t: ORDER.get(t, 9))
        sw = med([r["wall"] for r in runs.get((row, case, "strata"), [])])
        for t in tools:
            rs = runs[(row, case, t)]
            wall = med([r["wall"] for r in rs])
            cpu = med([r["user"] + r["sys"] for r in rs])
            rss = med([r["peak_rss_kb"] / 1024 for r in rs])
            sc = med([r["syscalls"] for r in rs])
            wr = med([(r["written_bytes"] or 0) / 1e6 for r in rs])
            ratio = "" if t == "strata" or sw is None else f"{sw / max(wall, 1e-3):.2f}"
            print(f"| {row} | {case} | {t} | {len(rs)} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | "
                  f"{int(sc) if sc is not None else '-'} | {wr:.1f} | {ratio} |")
    for row, lim in sorted(limits.items()):
        sw = med([r["wall"] for r in runs.get((row, "cold", "strata"), [])])
        extra = f"; strata cold / limit = {sw / lim['wall']:.2f}" if sw else ""
        print(f"\nRow {row} machine limit (read + sha256 + gzip at the layer level once, {lim['threads']} threads): "
              f"{lim['wall']:.2f} s for {lim['bytes'] / 1e6:.0f} MB in {lim['files']} files{extra}")


if __name__ == "__main__":
    main()
