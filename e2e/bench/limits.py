"""Physical limits of this machine, measured in the same run as the brokers.

- sequential write of 1 GiB with dd in the benchmark's data directory, with
  `conv=fdatasync` (what a broker that fsyncs can reach) and without (page cache);
- 16 KiB appends each followed by fdatasync, in the same directory (limits.c): what
  acks=all-after-fsync costs when nothing is batched, with the latency of one fdatasync;
- loopback TCP bandwidth, one connection (limits.c);
- one core's memcpy rate (limits.c).

limits.c is compiled here with the system gcc; a missing compiler or dd is reported as
that limit failing, the brokers are still measured.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (label in tables, what it bounds)
LIMITS = {
    "disk_fdatasync": "sequential write, 1 GiB, dd conv=fdatasync",
    "disk_cached": "sequential write, 1 GiB, dd without sync (page cache)",
    "disk_fsync_16k": "16 KiB appends, fdatasync after each (limits.c)",
    "loopback_tcp": "loopback TCP, one connection, 1 MiB writes",
    "memcpy": "memcpy, one core, 64 MiB buffers",
}


def dd_mbps(directory: Path, sync: bool) -> float:
    """MB/s of writing 1 GiB sequentially into `directory`, fdatasync'ed at the end if `sync`."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="dd-") as f:
        args = ["dd", "if=/dev/zero", f"of={f.name}", "bs=1M", "count=1024"]
        if sync:
            args.append("conv=fdatasync")
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600).stderr
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out)
    if not m:
        raise RuntimeError(f"cannot parse dd output: {out.strip()[-200:]}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def limits_binary(workdir: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler (apt-get install gcc)")
    out = workdir / "limits"
    subprocess.run([gcc, "-O2", "-o", str(out), str(HERE / "limits.c")], check=True, capture_output=True,
                   timeout=120)
    return out


def measure_once(workdir: Path) -> dict[str, float | str]:
    """One reading of every limit in MB/s; a failed one maps to its error message."""
    results: dict[str, float | str] = {}

    def attempt(name, fn):
        try:
            results[name] = fn()
        except Exception as e:  # report, keep measuring the rest
            results[name] = f"{type(e).__name__}: {e}"[:200]

    attempt("disk_fdatasync", lambda: dd_mbps(workdir / "dd", True))
    attempt("disk_cached", lambda: dd_mbps(workdir / "dd", False))
    try:
        binary = limits_binary(workdir)

        def fsync_16k() -> float:
            (workdir / "dd").mkdir(parents=True, exist_ok=True)
            mbps, p50, p99 = map(float, subprocess.run([str(binary), "fsync", str(workdir / "dd"), "5"],
                                                       capture_output=True, text=True, check=True,
                                                       timeout=60).stdout.split())
            results["disk_fsync_16k:p50_ms"], results["disk_fsync_16k:p99_ms"] = p50, p99
            return mbps

        attempt("disk_fsync_16k", fsync_16k)
        attempt("loopback_tcp", lambda: float(subprocess.run([str(binary), "tcp", "3"], capture_output=True, text=True,
                                                             check=True, timeout=60).stdout))
        attempt("memcpy", lambda: float(subprocess.run([str(binary), "memcpy", "2"], capture_output=True, text=True,
                                                       check=True, timeout=60).stdout))
    except Exception as e:
        results.setdefault("disk_fsync_16k", f"limits.c: {e}"[:200])
        results.setdefault("loopback_tcp", f"limits.c: {e}"[:200])
        results.setdefault("memcpy", f"limits.c: {e}"[:200])
    return results
