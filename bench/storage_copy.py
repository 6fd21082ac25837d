"""Storage-to-storage benchmark: runyard's copy against fsspec's own `put`, on the same files, in the same run.

    python bench/storage_copy.py [--total-mb 1024] [--files 200] [--repeats 3] [--only local,s3] \\
        [--json bench/results/copy_1024mb.json]

Writes --files files of random bytes (--total-mb in all) under a temporary folder in /tmp, then, --repeats
times and in alternating order, copies them:
- local -> local: runyard (a storage-to-storage run in this process: SQLite store, a worker with the default 4
  slots, the default `files_per_task: auto`; each file copied in the kernel, fsynced, its size checked, renamed
  into place, one fsync of the folder per task) against fsspec's LocalFileSystem `put` of the same list (one
  file after the other, no fsync), timed alone and followed by `os.sync()` so that its copies are as durable
  as runyard's;
- local -> S3: the same run to s3:// against s3fs's `put` of the same list (s3fs uploads up to 128 files at
  once), both to one moto S3 server started in its own process on 127.0.0.1.
runyard's time is its run's, from created_at (the launch) to completed_at (the last task's end), as the store
recorded them. Beside each time, the CPU seconds (user + system) this process and the moto server used
meanwhile. Every copy is checked (count and sizes) after it is timed; destinations are removed between repeats
and the whole folder at the end. Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import code_version, machine

KEY, SECRET = "bench-key", "bench-secret"
SPEC = """
configuration_type: storage-to-storage
configuration_id: {name}
source: {source}
destination: {destination}
files: ["*.bin"]
"""


@dataclass
class Measure:
    bench: str
    route: str
    seconds: float
    bytes: int
    cpu_seconds: float  # this process's, user + system, while it copied
    server_cpu_seconds: float | None  # the moto server's (S3 only)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="local,s3")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    routes = [route.strip() for route in args.only.split(",") if route.strip()]
    work = Path(tempfile.mkdtemp(prefix="runyard-bench-copy-", dir="/tmp"))
    try:
        source = work / "files" / "source"
        total = write_files(source, args.files, args.total_mb * 2**20)
        measures = run_all(work, source, total, routes, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = report(measures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "command": " ".join(["python", "bench/storage_copy.py", *sys.argv[1:]]),
            "code": code_version(),
            "machine": machine(None),
            "files": args.files,
            "bytes": total,
            "repeats": args.repeats,
            "results": rows,
            "measures": [vars(m) for m in measures],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


def write_files(folder: Path, count: int, total: int) -> int:
    folder.mkdir(parents=True)
    size = total // count
    for index in range(count):
        (folder / f"part-{index:04d}.bin").write_bytes(os.urandom(size))
    os.sync()
    return size * count


def run_all(work: Path, source: Path, total: int, routes: list[str], repeats: int) -> list[Measure]:
    measures: list[Measure] = []
    with runyard_runtime(work) as runyard, moto_server(work) if "s3" in routes else _nothing() as s3:
        for repeat in range(repeats):
            for route in routes:
                pair: list[Callable[[], list[Measure]]] = [
                    partial(runyard, route, repeat, source, s3 if route == "s3" else None),
                    partial(fsspec_put, work, route, repeat, source, s3 if route == "s3" else None),
                ]
                for measure in pair if repeat % 2 == 0 else reversed(pair):
                    os.sync()  # what earlier copies left dirty does not land on the next one
                    taken = measure()
                    for each in taken:
                        each.bytes = total
                        print(
                            f"  {each.route:5} {each.bench:22} {each.seconds:7.2f} s {each.mb_per_s:8.1f} MB/s"
                            f"  CPU {each.cpu_seconds:5.2f} s, moto {_show(each.server_cpu_seconds)}"
                        )
                    measures.extend(taken)
    return measures


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


class CpuClock:
    """CPU seconds (user + system) since it was made: of this process, and of the moto server if any."""

    def __init__(self, s3: MotoServer | None) -> None:
        self.s3 = s3
        self.started = _own_cpu()
        self.server_started = s3.cpu_seconds() if s3 else 0.0

    def read(self) -> tuple[float, float | None]:
        server = self.s3.cpu_seconds() - self.server_started if self.s3 else None
        return _own_cpu() - self.started, server


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _show(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:5.2f} s"


# --- runyard --------------------------------------------------------------------------------------


@contextmanager
def runyard_runtime(work: Path) -> Iterator[Callable[[str, int, Path, Any], list[Measure]]]:
    """A runtime as `runyard serve` runs one (SQLite store, worker, tuned GC); a function running one copy."""
    from runyard.domain.statuses import RunStatus, RunType
    from runyard.operations.loader import load_text
    from runyard.runtime import Runtime, engine_resources, open_store, tuned_gc
    from runyard.services.accounts import bootstrap_admin
    from runyard.services.operations import deploy
    from runyard.services.runs import LaunchRequest
    from runyard.settings import Settings

    os.environ["RUNYARD_BENCH_S3_KEY"], os.environ["RUNYARD_BENCH_S3_SECRET"] = KEY, SECRET
    settings = Settings(
        home=work / "home", storage_roots=[str(work / "files")], heartbeat_seconds=1.0, poll_seconds=0.2
    )
    store = open_store(settings)
    bootstrap_admin(store, "bench-password")
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
    worker = runtime.worker("bench")
    worker.start()

    def run(route: str, repeat: int, source: Path, s3: Any) -> list[Measure]:
        name = f"bench-{route}-{repeat}"
        destination = str(work / "files" / name) if route == "local" else s3.location(f"s3://bench/{name}")
        text = SPEC.format(name=name, source=source, destination=destination)
        (deployed,) = deploy(store, load_text(text), runtime.registry)
        clock = CpuClock(s3)
        view = runtime.runs.launch(LaunchRequest(operation_id=deployed.operation_id, run_type=RunType.DESTRUCTIVE))
        while not (view := runtime.runs.get_run(view.id)).status.is_final:
            time.sleep(0.02)
        cpu, server_cpu = clock.read()
        if view.status is not RunStatus.COMPLETED or view.completed_at is None:
            raise SystemExit(f"run {view.id} ended {view.status.label}: {view.message}")
        seconds = (view.completed_at - view.created_at).total_seconds()
        check_copies(source, destination if route == "local" else f"bench/{name}", s3 if route == "s3" else None)
        remove(destination if route == "local" else f"bench/{name}", s3 if route == "s3" else None)
        return [Measure("runyard", route, seconds, 0, cpu, server_cpu)]

    try:
        with tuned_gc():
            yield run
    finally:
        worker.stop(5)
        runtime.close()


# --- fsspec ---------------------------------------------------------------------------------------


def fsspec_put(work: Path, route: str, repeat: int, source: Path, s3: Any) -> list[Measure]:
    import fsspec

    sources = sorted(str(path) for path in source.iterdir())
    name = f"fsspec-{route}-{repeat}"
    if route == "local":
        folder = work / "files" / name
        folder.mkdir()
        targets = [str(folder / Path(path).name) for path in sources]
        clock = CpuClock(None)
        started = time.perf_counter()
        fsspec.filesystem("file").put(sources, targets)
        put, (put_cpu, _) = time.perf_counter() - started, clock.read()
        os.sync()
        synced, (synced_cpu, _) = time.perf_counter() - started, clock.read()
        check_copies(source, str(folder), None)
        remove(str(folder), None)
        return [
            Measure("fsspec put", route, put, 0, put_cpu, None),
            Measure("fsspec put + os.sync()", route, synced, 0, synced_cpu, None),
        ]
    targets = [f"bench/{name}/{Path(path).name}" for path in sources]
    clock = CpuClock(s3)
    started = time.perf_counter()
    s3.fs.put(sources, targets)
    seconds, (cpu, server_cpu) = time.perf_counter() - started, clock.read()
    check_copies(source, f"bench/{name}", s3)
    remove(f"bench/{name}", s3)
    return [Measure("s3fs put", route, seconds, 0, cpu, server_cpu)]


# --- the S3 server --------------------------------------------------------------------------------


@dataclass
class MotoServer:
    endpoint_url: str
    fs: Any
    pid: int

    def cpu_seconds(self) -> float:
        """The server process's CPU seconds so far, user + system (Linux: /proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def location(self, url: str) -> str:
        return (
            f"{{url: '{url}', endpoint_url: '{self.endpoint_url}', region: us-east-1, "
            "key_env: RUNYARD_BENCH_S3_KEY, secret_env: RUNYARD_BENCH_S3_SECRET}"
        )


@contextmanager
def moto_server(work: Path) -> Iterator[MotoServer]:
    """moto's S3 server in its own process (its CPU is not the copier's) on a free loopback port."""
    import s3fs

    port = _free_port()
    log = (work / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        fs = s3fs.S3FileSystem(
            key=KEY,
            secret=SECRET,
            endpoint_url=endpoint,
            client_kwargs={"region_name": "us-east-1"},
            use_listings_cache=False,
            skip_instance_cache=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                fs.call_s3("create_bucket", Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield MotoServer(endpoint, fs, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- checks and the report ------------------------------------------------------------------------


def check_copies(source: Path, folder: str, s3: Any) -> None:
    expected = {path.name: path.stat().st_size for path in source.iterdir()}
    if s3 is None:
        found = {path.name: path.stat().st_size for path in Path(folder).iterdir()}
    else:
        found = {Path(name).name: int(info["size"]) for name, info in s3.fs.find(folder, detail=True).items()}
    if found != expected:
        raise SystemExit(f"{folder}: {len(found)} files, expected {len(expected)} of the sources' sizes")


def remove(folder: str, s3: Any) -> None:
    if s3 is None:
        shutil.rmtree(folder)
    else:
        s3.fs.rm(folder, recursive=True)


def report(measures: list[Measure]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for route in dict.fromkeys(m.route for m in measures):
        runyard = [m.seconds for m in measures if m.route == route and m.bench == "runyard"]
        ours = statistics.median(runyard)
        for bench in dict.fromkeys(m.bench for m in measures if m.route == route):
            taken = [m for m in measures if m.route == route and m.bench == bench]
            seconds = statistics.median(m.seconds for m in taken)
            # each repeat ran runyard and this bench one after the other: their ratio shares the machine's load
            paired = statistics.median(m.seconds / mine for m, mine in zip(taken, runyard, strict=True))
            server = [m.server_cpu_seconds for m in taken if m.server_cpu_seconds is not None]
            rows.append(
                {
                    "route": route,
                    "bench": bench,
                    "seconds": round(seconds, 3),
                    "mb_per_s": round(taken[0].bytes / 1e6 / seconds, 1),
                    "runyard_throughput_ratio": round(seconds / ours, 3),
                    "median_of_paired_ratios": round(paired, 3),
                    "all_seconds": [round(m.seconds, 3) for m in taken],
                    "cpu_seconds": round(statistics.median(m.cpu_seconds for m in taken), 2),
                    "server_cpu_seconds": round(statistics.median(server), 2) if server else None,
                }
            )
    print(
        "\n| route | bench | median s | MB/s | runyard's throughput ÷ this one's | the same, median of the "
        "repeats' | CPU s | moto CPU s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        moto = "-" if row["server_cpu_seconds"] is None else f"{row['server_cpu_seconds']:.2f}"
        print(
            f"| {row['route']} | {row['bench']} | {row['seconds']:.2f} | {row['mb_per_s']:,.0f} | "
            f"{row['runyard_throughput_ratio']:.0%} | {row['median_of_paired_ratios']:.0%} | "
            f"{row['cpu_seconds']:.2f} | {moto} |"
        )
    return rows


if __name__ == "__main__":
    main()
