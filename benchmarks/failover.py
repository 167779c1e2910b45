"""Wire-mode failover timing per lease backend: real processes on loopback (`xmc venue`, etcd or
ZooKeeper, a primary and a standby `xmc live` node), the primary killed with SIGKILL after it has
traded; per trial the wall time from the kill to the standby holding the lease (active) and to every
venue reconciled. Beside each backend, as the baseline measured in the same run, that service's own
floor: how long the lease takes to free itself once its holder is gone (etcd: a TTL lease no longer
kept alive; ZooKeeper: the session of a killed holder process, expired by the server).
Run: .venv/bin/python benchmarks/failover.py [--backend etcd|zookeeper|both] [--trials N]

Target (issue 15): crash -> standby active p99 under 500 ms on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.shell.live import wait_for  # noqa: E402
from simulator.localnet import EtcdProcess, ZooKeeperProcess, live_config, zookeeper_available  # noqa: E402
from simulator.runner import percentile  # noqa: E402


def lease_floor(client, ttl: int) -> float:
    """Seconds from a holder's last keep-alive until another node can take the lease (etcd's TTL)."""
    from engine.shell.lease import EtcdLease

    a, b = EtcdLease(client, "a", ttl=ttl), EtcdLease(client, "b", ttl=ttl)
    a.acquire("a", time.monotonic())
    a.keep_alive("a", time.monotonic())
    stopped = time.monotonic()
    wait_for(lambda: b.acquire("b", time.monotonic()) is not None, ttl + 5, 0.01)
    took = time.monotonic() - stopped
    b.release("b", time.monotonic())
    return took


ZK_HOLDER = """
import sys, time
from kazoo.client import KazooClient
c = KazooClient(hosts=sys.argv[1], timeout=float(sys.argv[2])); c.start(timeout=10)
c.create("/xmc/floor", b"a", ephemeral=True, makepath=True)
print("held", flush=True)
time.sleep(60)
"""


def zookeeper_floor(zk, session_s: float) -> float:
    """Seconds from the kill of a holder process until its ephemeral node is gone (the server expired
    its session), seen by a watching client."""
    import threading

    holder = subprocess.Popen(
        [sys.executable, "-c", ZK_HOLDER, zk.hosts, str(session_s)], stdout=subprocess.PIPE, text=True
    )
    holder.stdout.readline()
    watcher = zk.client(session_s)
    gone = threading.Event()
    if watcher.exists("/xmc/floor", watch=lambda _e: gone.set()) is None:
        gone.set()
    killed = time.monotonic()
    holder.kill()
    gone.wait(30)
    took = time.monotonic() - killed
    holder.wait()
    watcher.stop()
    return took


def trial(work: Path, lease_args: list[str]) -> dict:
    sc = (
        (ROOT / "benchmarks" / "throughput.toml")
        .read_text()
        .replace("max_concurrent_episodes = 50", "max_concurrent_episodes = 1")
        .replace("cooldown_ms = 0", "cooldown_ms = 300")
    )
    work.mkdir(parents=True, exist_ok=True)
    scenario = work / "scenario.toml"
    scenario.write_text(sc)
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario),
            "--duration",
            "60",
            "--state",
            str(work / "venue.json"),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs = [venue]
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        configs = {}
        for name in ("primary", "standby"):
            configs[name] = work / f"{name}.toml"
            configs[name].write_text(live_config(sc, ports, work / name))
        standby = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xmc.cli",
                "live",
                "--config",
                str(configs["standby"]),
                "--role",
                "standby",
                "--node",
                "b",
                "--duration",
                "12",
                *lease_args,
                "--peer",
                "127.0.0.1:0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(standby)
        # the standby listens for the primary's stream on a port the OS gives it, and says which
        following = re.search(r"following on (\S+:\d+)", standby.stdout.readline())
        if following is None:
            raise RuntimeError("the standby did not say where it follows the primary")
        common = [*lease_args, "--peer", following[1]]
        primary = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xmc.cli",
                "live",
                "--config",
                str(configs["primary"]),
                "--role",
                "primary",
                "--node",
                "a",
                "--duration",
                "60",
                "--trace",
                *common,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(primary)
        fills = 0
        for line in primary.stdout:
            fills += "|fill|" in line
            if fills >= 6:
                break
        killed = time.time()
        os.kill(primary.pid, signal.SIGKILL)
        primary.wait(timeout=10)
        standby.wait(timeout=60)
    finally:
        for p in procs[1:]:
            if p.poll() is None:
                p.kill()
        venue.stdin.close()
        venue.wait(timeout=30)
    node = json.loads((work / "standby" / "report.json").read_text())["node"]
    return {
        "active_ms": (node["active_at"] - killed) * 1e3,
        "reconciled_ms": (node["reconciled_at"] - killed) * 1e3 if node.get("reconciled_at") else None,
        "detected_ms": (node["detected_at"] - killed) * 1e3,
    }


def measure(args, backends: list[str], work: Path) -> dict:
    """Each backend's expiry floor and failover trials, its service started in `work` and stopped after."""
    results = {}
    for backend in backends:
        if backend == "etcd":
            service = EtcdProcess(work / "etcd")
            lease_args = [
                "--lease-service",
                "etcd",
                "--etcd",
                f"127.0.0.1:{service.port}",
                "--lease-ttl-s",
                str(args.ttl),
            ]
            label = f"etcd floor: lease (TTL {args.ttl} s) free after the last keep-alive"
        else:
            service = ZooKeeperProcess(work / "zookeeper")
            lease_args = [
                "--lease-service",
                "zookeeper",
                "--zookeeper",
                service.hosts,
                "--lease-session-ms",
                f"{args.session_ms:g}",
            ]
            label = f"ZooKeeper floor: a killed holder's node gone (session {args.session_ms:g} ms)"
        try:
            if backend == "etcd":
                floors = [lease_floor(service.client(), args.ttl) * 1e3 for _ in range(args.trials)]
            else:
                floors = [zookeeper_floor(service, args.session_ms / 1e3) * 1e3 for _ in range(args.trials)]
            rows = [trial(work / f"{backend}-t{i}", lease_args) for i in range(args.trials)]
        finally:
            service.stop()
        results[backend] = (label, floors, rows)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3, help="kill/takeover cycles per backend (default 3)")
    ap.add_argument("--backend", choices=("etcd", "zookeeper", "both"), default="both")
    ap.add_argument("--ttl", type=int, default=1, help="etcd lease TTL in whole seconds (default 1, etcd's least)")
    ap.add_argument("--session-ms", type=float, default=300.0, help="ZooKeeper session timeout (default 300)")
    args = ap.parse_args()
    backends = ["etcd", "zookeeper"] if args.backend == "both" else [args.backend]
    if "etcd" in backends and shutil.which("etcd") is None:
        print("etcd not installed: run scripts/bootstrap (apt-get install etcd-server)", file=sys.stderr)
        return 2
    if "zookeeper" in backends and not zookeeper_available():
        print("ZooKeeper not installed: run scripts/bootstrap (apt-get install zookeeper)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xmc-failover-bench-") as work:
        results = measure(args, backends, Path(work))
    print(f"{'measure (wall ms, from the kill)':<64} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8}")

    def row(label: str, values: list[float]) -> None:
        values = [v for v in values if v is not None]
        print(
            f"{label:<64} {len(values):>4} {percentile(values, 50):>8.0f} {percentile(values, 99):>8.0f} "
            f"{max(values):>8.0f}"
        )

    for backend, (label, floors, rows) in results.items():
        row(label, floors)
        row(
            f"{backend}: standby detected (3 missed 100 ms heartbeats, or the lease gone)",
            [r["detected_ms"] for r in rows],
        )
        row(f"{backend}: crash -> standby active (lease taken)", [r["active_ms"] for r in rows])
        row(f"{backend}: crash -> every venue reconciled (AF, H)", [r["reconciled_ms"] for r in rows])
        active = [r["active_ms"] for r in rows]
        p99 = percentile(active, 99)
        print(
            f"{backend}: crash -> standby active p99 {p99:.0f} ms (target < 500 ms: "
            f"{'met' if p99 < 500 else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
