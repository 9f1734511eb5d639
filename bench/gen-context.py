#!/usr/bin/env python3
"""Writes a deterministic build context for the build benchmarks.

    gen-context.py DIR FILES MEGABYTES [--seed N] [--text PERCENT]

DIR/app holds FILES files (100 per directory) whose sizes follow a
log-normal spread and add up to MEGABYTES (10^6 bytes); DIR/last holds one
small file; DIR/Dockerfile copies both onto busybox. About PERCENT of the
bytes (default 70) are source-like text (compresses about 4x), the rest
pseudo-random (does not compress): roughly what an application tree with
its dependencies holds. The same arguments always give the same bytes.
"""
import argparse
import os
import random

WORDS = (
    "function return const let var if else for while import export from "
    "class def self None True False await async yield lambda try except "
    "finally raise with as in is not and or module require exports default "
    "value index data result error callback options config buffer length "
    "string number object array map filter reduce push pop shift keys "
    "prototype this new typeof instanceof null undefined console log"
).split()


def corpus(rng, size):
    out, n = [], 0
    while n < size:
        indent = "    " * rng.randrange(4)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        line += rng.choice(["(", ");", " {", "}", ":", ",", ""]) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("files", type=int)
    p.add_argument("megabytes", type=float)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--text", type=int, default=70)
    a = p.parse_args()
    rng = random.Random(a.seed)
    total = int(a.megabytes * 1_000_000)
    weights = [rng.lognormvariate(0, 1.2) for _ in range(a.files)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[-1] += total - sum(sizes)
    text = corpus(rng, 4 << 20)
    app = os.path.join(a.dir, "app")
    for i, size in enumerate(sizes):
        d = os.path.join(app, f"d{i // 100:03d}")
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        if rng.randrange(100) < a.text:
            off = rng.randrange(len(text))
            data = (text[off:] + text[:off]) * (size // len(text) + 1)
            data = data[:size]
        else:
            data = rng.randbytes(size)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(a.dir, "last"), exist_ok=True)
    with open(os.path.join(a.dir, "last", "version"), "w") as f:
        f.write("1\n")
    with open(os.path.join(a.dir, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY app /app\nCOPY last /last\n")


if __name__ == "__main__":
    main()
