"""What `runyard serve` with several HTTP processes looks like from outside, read from Linux's /proc."""

from __future__ import annotations

import os
from pathlib import Path


def http_helpers(pid: int) -> set[int]:
    """The processes `serve` started to answer HTTP (not multiprocessing's resource tracker)."""
    try:
        children = {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()
    found = set()
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except FileNotFoundError:
            pass
    return found


def connection_holders(pids: set[int], port: int) -> set[int]:
    """The processes among `pids` holding an established TCP connection on local `port` (Linux /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(fields[9])  # the socket's inode
    holders = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in established for link in links):
            holders.add(pid)
    return holders


def alive_processes(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in process_state(pid)}


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
