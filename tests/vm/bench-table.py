#!/usr/bin/env python3
"""Turn the BENCH/MANY/IDLE lines of a bench-kernel VM log into markdown tables.

    tests/vm/bench-table.py target/vm-logs/bench-kernel-....log

Medians over the rounds, with the spread (max-min as a percentage of the median) in brackets;
ratios are of medians measured in the same boot.
"""
import statistics
import sys
from collections import defaultdict

ORDER = ["rd_mcp", "fileio", "tcmu-runner", "native", "ram", "raw-file"]
WORKLOADS = ["r4k32", "w4k32", "r4k1", "w4k1", "r64k8", "w64k8", "r1m8", "w1m8"]
TITLES = {
    "r4k32": "4K randread QD32", "w4k32": "4K randwrite QD32", "r4k1": "4K randread QD1",
    "w4k1": "4K randwrite QD1", "r64k8": "64K randread QD8", "w64k8": "64K randwrite QD8",
    "r1m8": "1M read QD8 (MiB/s)", "w1m8": "1M write QD8 (MiB/s)",
}
USERSPACE = ["tcmu-runner", "native", "ram", "raw-file"]
WASMTAP = ["native", "ram", "raw-file"]


def fnum(x):
    return None if x == "-" else float(x)


def main(path):
    runs = defaultdict(list)  # (backend, workload) -> [(iops, mibs, lat, dcpu, vcpu)]
    extra = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("BENCH "):
                p = line.split()
                runs[(p[1], p[2])].append(
                    (float(p[4]), float(p[5]), float(p[6]), fnum(p[7]), fnum(p[8]),
                     fnum(p[9]) if len(p) > 9 else None))
            elif line.startswith(("MANY ", "IDLE ")):
                extra.append(line)
    if not runs:
        sys.exit(f"no BENCH lines in {path}")
    backends = [b for b in ORDER if any(k[0] == b for k in runs)]
    workloads = [w for w in WORKLOADS if any(k[1] == w for k in runs)]
    rounds = max(len(v) for v in runs.values())

    def med(b, w, i):
        vals = [r[i] for r in runs.get((b, w), []) if r[i] is not None]
        return statistics.median(vals) if vals else None

    def spread(b, w, i):
        vals = [r[i] for r in runs.get((b, w), []) if r[i] is not None]
        m = statistics.median(vals) if vals else 0
        return 100.0 * (max(vals) - min(vals)) / m if m else 0.0

    def perf(b, w):
        return med(b, w, 1 if w.endswith("m8") else 0)

    def table(title, cols, rows, cell):
        print(f"\n**{title}**\n")
        print("| | " + " | ".join(TITLES[c] for c in cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for r in rows:
            print(f"| {r} | " + " | ".join(cell(r, c) for c in cols) + " |")

    print(f"{rounds} interleaved rounds; median [spread]")
    table("IOPS (MiB/s for 1M)", workloads, backends,
          lambda b, w: "-" if perf(b, w) is None else
          f"{perf(b, w):.0f} [{spread(b, w, 1 if w.endswith('m8') else 0):.0f}%]")

    def ratio(b, base, w):
        x, y = perf(b, w), perf(base, w)
        return "-" if x is None or not y else f"{x / y:.2f}x"

    for base in ("tcmu-runner", "fileio", "rd_mcp"):
        if base in backends:
            table(f"ratio to {base}", workloads, [b for b in WASMTAP if b in backends],
                  lambda b, w, base=base: ratio(b, base, w))
    table("daemon CPU per I/O (us, utime+stime of the userspace process)", workloads,
          [b for b in USERSPACE if b in backends],
          lambda b, w: "-" if med(b, w, 3) is None else f"{med(b, w, 3):.0f} [{spread(b, w, 3):.0f}%]")
    table("VM CPU per I/O (us, all CPUs, kernel included)", workloads, backends,
          lambda b, w: "-" if med(b, w, 4) is None else f"{med(b, w, 4):.0f}")
    table("daemon sleeps per I/O (voluntary context switches of all its threads)", workloads,
          [b for b in USERSPACE if b in backends],
          lambda b, w: "-" if med(b, w, 5) is None else f"{med(b, w, 5):.2f}")
    table("mean latency (us)", workloads, backends,
          lambda b, w: "-" if med(b, w, 2) is None else f"{med(b, w, 2):.0f}")
    if extra:
        print("\n**many devices**\n")
        for line in extra:
            print(f"    {line}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
