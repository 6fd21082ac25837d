"""Ingest benchmark: runyard against the raw limit and dlt, on the same fixture, in the same run.

    python bench/ingest.py --rows 1000000 --repeats 3 --peers-python /tmp/peers/bin/python \\
        [--only runyard,limit_arrow,dlt_arrow,dlt_tuned] [--json bench/results/ingest.json]
    python bench/ingest.py --rows 1000000 --repeats 5 --only runyard --live-metrics

`--live-metrics` measures runyard twice in the same invocation, runs interleaved: with live metrics written
every second (RUNYARD_METRICS_SECONDS=1, the default) and with them off (a flush interval longer than any run),
and prints both and the ratio. Its target: at most 5% slower with them on.

The fixture API and the peer scripts are ../shared/bench's (its README says how to make the peers'
virtual environment). Each bench runs as its own process under /usr/bin/time -v against one fixture
started once with --prewarm, so every bench reads the very same pages. Prints a Markdown table with
medians and each peer's ratio to runyard.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RUNYARD_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
sys.path.insert(0, str(SHARED))

import run_bench  # noqa: E402  (the shared harness: start_fixture, run_once, BENCHES)

RUNYARD = [str(ROOT / "bench" / "runyard_ingest.py")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="runyard,limit_arrow,dlt_arrow,dlt_tuned")
    parser.add_argument("--peers-python", default="/tmp/peers/bin/python", help="venv with ../shared/bench deps")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--live-metrics", action="store_true", help="runyard with live metrics on and off")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    fixture = run_bench.start_fixture(args.peers_python, args.rows, args.port)
    results = []
    try:
        for name in args.only.split(","):
            if name == "runyard" and args.live_metrics:
                results.extend(measure_live_metrics(args, base))
            else:
                results.append(measure(name, args, base))
    finally:
        fixture.terminate()
        fixture.wait(10)
    print_table(results, args.rows)
    if args.live_metrics:
        print_live_metrics(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": args.rows, "results": results}, indent=1))


#: (bench name, RUNYARD_METRICS_SECONDS): live metrics every second, and never within a run.
LIVE_METRICS = (("runyard", "1"), ("runyard_metrics_off", "1000000000"))


def measure(name: str, args: argparse.Namespace, base: str) -> dict[str, Any]:
    if name == "runyard":
        python, command = sys.executable, [*RUNYARD, "--rows", str(args.rows)]
    else:
        python, command = args.peers_python, run_bench.BENCHES[name]
    runs = [run_bench.run_once(python, command, base, args.timeout) for _ in range(args.repeats)]
    return summarize(name, args, runs)


def measure_live_metrics(args: argparse.Namespace, base: str) -> list[dict[str, Any]]:
    """runyard with live metrics on and off, the runs interleaved so that the machine's drift hits both alike."""
    command = [*RUNYARD, "--rows", str(args.rows)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in LIVE_METRICS}
    for _ in range(args.repeats):
        for name, seconds in LIVE_METRICS:
            os.environ["RUNYARD_METRICS_SECONDS"] = seconds  # the bench process inherits it
            try:
                runs[name].append(run_bench.run_once(sys.executable, command, base, args.timeout))
            finally:
                os.environ.pop("RUNYARD_METRICS_SECONDS", None)
    return [summarize(name, args, runs[name]) for name, _ in LIVE_METRICS]


def print_live_metrics(results: list[dict[str, Any]]) -> None:
    on, off = (next(r for r in results if r["bench"] == name) for name, _ in LIVE_METRICS)
    slower = on["seconds"] / off["seconds"] - 1
    print(
        f"\nlive metrics on: {on['seconds']:.2f} s ({on['rows_per_s']:,.0f} rows/s); off: {off['seconds']:.2f} s "
        f"({off['rows_per_s']:,.0f} rows/s); on ÷ off time = {on['seconds'] / off['seconds']:.3f} "
        f"({slower:+.1%}; target at most +5%)"
    )


def summarize(name: str, args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    for run in runs:
        if run["rows"] != args.rows:
            raise SystemExit(f"{name} loaded {run['rows']} rows, expected {args.rows}")
    wall = statistics.median(r["wall"] for r in runs)
    seconds = statistics.median(r["seconds"] for r in runs)
    print(f"{name}: {args.rows / seconds:,.0f} rows/s (run), {args.rows / wall:,.0f} rows/s (wall)", file=sys.stderr)
    return {
        "bench": name,
        "rows": args.rows,
        "wall": wall,
        "seconds": seconds,
        "rss_mb": statistics.median(r["rss_mb"] for r in runs),
        "rows_per_s": args.rows / seconds,
        "rows_per_s_wall": args.rows / wall,
        "runs": runs,
    }


def print_table(results: list[dict[str, Any]], rows: int) -> None:
    ours = next((r for r in results if r["bench"] == "runyard"), None)
    print("| bench | rows | run s | rows/s | wall s (with start-up) | peak RSS MB | runyard ÷ bench |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ratio = f"{ours['rows_per_s'] / r['rows_per_s']:.2f}x" if ours else ""
        print(
            f"| {r['bench']} | {rows:,} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {r['wall']:.2f} | "
            f"{r['rss_mb']:.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
