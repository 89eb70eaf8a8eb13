"""Run every benchmark in turn (`make bench`). Each prints ratios measured side
by side in one run; see docs/benchmarks.md for what each compares."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["bench_lif.py"],
    ["bench_qif.py"],
    ["bench_cuba.py"],
    ["bench_loihi.py", "--samples", "1000"],
    ["bench_link.py", "--baud", "115200", "921600", "--samples", "600"],
    ["bench_loop.py", "--steps", "20"],
]


def main() -> int:
    failed = []
    for argv in BENCHES:
        print(f"\n=== {' '.join(argv)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:]])
        if rc:
            failed.append(argv[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
