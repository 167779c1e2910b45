"""Real parts on this machine's loopback for wire tests, benchmarks and scripts: a throwaway etcd or
ZooKeeper on ports the OS gives, the `xmc live` config that points an engine at `xmc venue`'s ports, and a TCP
relay whose connections can be cut (a replication stream between two processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from engine.shell.live import wait_for
from simulator.ports import PortReservation, reserve
from simulator.relay import hang_up


class _ServerProcess:
    """A server process on ports held for it (`_ports`) until it stops."""

    proc: subprocess.Popen
    _ports: dict[str, PortReservation]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._release()

    def _release(self) -> None:
        for reservation in self._ports.values():
            reservation.close()


class EtcdProcess(_ServerProcess):
    """Debian's etcd on 127.0.0.1, its client and peer ports held for it (simulator.ports), its data in
    `data_dir`."""

    def __init__(self, data_dir: Path):
        import etcd3gw

        # etcd binds port 0 well, but its gRPC gateway (the JSON API etcd3gw speaks) then dials the
        # configured address, port 0, and never serves: so it is given ports the OS assigned to sockets
        # held here until stop(), which no other process can take meanwhile
        self._ports = reserve(("client", "peer"))
        self.port, peer = self._ports["client"].port, self._ports["peer"].port
        self.name = f"xmc-{os.getpid()}-{time.monotonic_ns()}"  # the member that must answer on the port
        self.proc = subprocess.Popen(
            [
                "etcd",
                "--name",
                self.name,
                "--data-dir",
                str(data_dir),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"{self.name}=http://127.0.0.1:{peer}",
                "--heartbeat-interval",
                "10",
                "--election-timeout",
                "100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        probe = etcd3gw.client(host="127.0.0.1", port=self.port)

        def up() -> bool:
            try:
                return [m.get("name") for m in probe.members()] == [self.name] or self.proc.poll() is not None
            except Exception:  # noqa: BLE001 - not listening yet
                return self.proc.poll() is not None  # died: stop waiting; say why below

        wait_for(up, 20, 0.05)
        if self.proc.poll() is not None:
            self._release()
            stderr = self.proc.stderr.read().decode() if self.proc.stderr is not None else ""
            raise RuntimeError("etcd did not start: " + stderr[-2000:])
        if not up():
            self.stop()
            raise RuntimeError(f"etcd did not start: port {self.port} did not answer as member {self.name} within 20 s")

    def client(self):
        import etcd3gw

        return etcd3gw.client(host="127.0.0.1", port=self.port)


ZOOKEEPER_JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-nop.jar")  # Debian's zookeeper package


def zookeeper_available() -> bool:
    return Path(ZOOKEEPER_JARS[0]).exists() and Path("/usr/bin/java").exists()


class ZooKeeperProcess(_ServerProcess):
    """Debian's ZooKeeper, standalone on 127.0.0.1 (client port from the OS), its data in `data_dir`;
    `tick_ms` sets how finely it expires sessions (a session may be as short as two ticks);
    `max_session_ms` caps the session timeout it grants."""

    def __init__(self, data_dir: Path, tick_ms: int = 50, max_session_ms: int = 60000):
        # ZooKeeper cannot be given port 0 (clientPort=0 means "no client port"): it is given a port the OS
        # assigned to a socket held here until stop() (simulator.ports), which no other process can take
        data_dir.mkdir(parents=True, exist_ok=True)
        self._ports = reserve(("client",))
        self.port = self._ports["client"].port
        cfg = data_dir / "zoo.cfg"
        cfg.write_text(
            f"tickTime={tick_ms}\ndataDir={data_dir}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
            f"admin.enableServer=false\nminSessionTimeout={2 * tick_ms}\nmaxSessionTimeout={max_session_ms}\n"
            f"4lw.commands.whitelist=ruok,conf\n"
        )
        log = data_dir / "zookeeper.log"
        self.proc = subprocess.Popen(
            [
                "/usr/bin/java",
                "-Xmx256m",
                "-cp",
                ":".join(ZOOKEEPER_JARS),
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(cfg),
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            try:  # the server on the port must be this one (its dataDir)
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"conf")
                    answer = b""
                    while chunk := c.recv(4096):
                        answer += chunk
                    mine = {f"dataDir={data_dir}", f"dataDir={data_dir / 'version-2'}"}
                    return (
                        bool(mine & set(answer.decode(errors="replace").splitlines())) or self.proc.poll() is not None
                    )
            except OSError:
                return self.proc.poll() is not None  # died: stop waiting; say why below

        wait_for(up, 30, 0.05)
        if self.proc.poll() is not None:
            self._release()
            raise RuntimeError(
                "ZooKeeper did not start: " + (log.read_text()[-2000:] or f"exit code {self.proc.returncode}")
            )
        if not up():
            self.stop()
            raise RuntimeError(
                f"ZooKeeper did not start: port {self.port} did not answer with dataDir {data_dir} within 30 s"
            )

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, session_timeout: float):
        """A started kazoo client asking for this session timeout (seconds), knowing what was granted."""
        from engine.shell.lease import zookeeper_client

        c = zookeeper_client(self.hosts, session_timeout)
        c.start(timeout=10)
        return c


DICTIONARIES = {"SHFE": "SHFE", "COMEX": "COMEX", "FX": "FXFEED"}


def live_config(
    scenario_text: str, ports: dict[str, int], out_dir: Path, extra: str = "", reset_on_logon: bool = False
) -> str:
    """An `xmc live` config trading the scenario's instruments, strategy and risk against the venue
    ports `xmc venue` announced (one session per venue, its dictionary by venue name). The sessions
    are open around the clock (not the venue templates' trading hours: a test runs at any time) and
    keep their sequence numbers across logons unless `reset_on_logon`."""
    tables = scenario_text[scenario_text.index("[instruments.") : scenario_text.index("[prices]")]
    sessions = "".join(
        f'[sessions.{n}]\nhost = "127.0.0.1"\nport = {p}\ntarget_comp_id = "{n}"\n'
        f'dictionary = "{DICTIONARIES.get(n, n)}"\n\n'
        for n, p in ports.items()
    )
    return (
        f'[live]\nout_dir = "{out_dir}"\nheartbeat_s = 1\nreconnect_s = 1\nstart_time = "00:00:00"\n'
        f'end_time = "00:00:00"\nreset_on_logon = {str(reset_on_logon).lower()}\n{extra}\n{sessions}{tables}'
    )


class TcpCut:
    """A loopback TCP relay in front of `target_port` whose connections can be cut: `cut(seconds)`
    closes every relayed connection and refuses new ones (accepted, then closed) for that long (for
    cutting a replication stream between two real processes); `cut(seconds, silent=True)` is a
    partition instead: connections stay up and new ones are taken, but every byte either way is held
    for that long and then delivered in order, as TCP's retransmissions deliver it once a partition
    heals; meanwhile a request waits unanswered until its client gives up (for cutting a node off
    from its lease service)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refuse_until = 0.0
        self.healed = threading.Event()  # cleared while a silent cut holds the bytes
        self.healed.set()
        self.live: list = []
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="xmc-tcp-cut", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if time.monotonic() < self.refuse_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.live += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                self.healed.wait()
                dst.sendall(data)
            except OSError:
                break
        # shut both down, not just close: the pump of the other direction is blocked in recv() on one
        # of them, and a plain close() from this thread would not send the FIN until that recv returns,
        # leaving the far end waiting forever on a connection that is gone
        hang_up([src, dst])

    def cut(self, seconds: float, silent: bool = False) -> None:
        self.cuts += 1
        if silent:
            self.healed.clear()
            threading.Timer(seconds, self.healed.set).start()
            return
        self.refuse_until = time.monotonic() + seconds
        with self._lock:
            live, self.live = self.live, []
        hang_up(live)

    def close(self) -> None:
        self.healed.set()
        hang_up([self.server])  # shut down first: a close alone does not wake the listener's blocked accept()
        self.server.close()
        self.cut(0.0)
