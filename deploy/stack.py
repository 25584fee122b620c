"""The local single-node stack: Derby for the Hive metastore, Kafka (KRaft), standalone HBase and its Thrift server,
memcached for the serving layer's rate limits, and Prometheus scraping every layer.

Each JVM service is started from the jars that `deploy/setup` fetched from Maven Central, and
memcached and Prometheus from Debian's packages (optional: `[stack] memcached`, `prometheus`),
each with its state, logs and pid file under the state folder. `start` waits until each service really
answers; `stop` ends exactly the processes whose pid files it wrote.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

from deploy import prometheus
from deploy.init import init
from readnext import artifacts
from readnext.config import PROJECT_ROOT, Config, load_config
from readnext.metrics import query_prometheus
from readnext.processes import pid_alive

# The flags HBase's own launcher (bin/hbase) adds on JDK 17.
HBASE_JDK17_FLAGS = [
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "--add-modules",
    "jdk.unsupported",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.nio=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.dns=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.util=ALL-UNNAMED",
]

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{ISO8601} %-5p [%t] %c{2}: %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="org.apache.zookeeper" level="WARN"/>
    <Logger name="org.apache.hadoop" level="WARN"/>
    <Logger name="org.apache.hadoop.hbase" level="INFO"/>
    <Root level="INFO"><AppenderRef ref="console"/></Root>
  </Loggers>
</Configuration>
"""


def kafka_cluster_id() -> str:
    """A random cluster id in Kafka's base64 form of a UUID.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with "-": the storage tool would read
    such an id as an option and refuse to format (one fresh stack in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class StackError(RuntimeError):
    """A service failed to start or stop; the message names the log file to read."""


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].strip().rpartition(":")
    return host, int(port)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _site_xml(props: dict[str, str]) -> str:
    rows = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}</configuration>\n'


def java(
    state_dir: Path, heap: str, classpath: list[Path], main_class: str, args: list[str], flags: list[str]
) -> list[str]:
    """The command line of one of the stack's JVMs."""
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={state_dir / 'conf' / 'log4j2.xml'}",
        *flags,
        "-cp",
        os.pathsep.join(str(p) for p in classpath),
        main_class,
        *args,
    ]


@dataclasses.dataclass
class Service:
    """One process of the stack: how to prepare, launch and probe it."""

    name: str
    address: str
    command: list[str]
    ready: Callable[[], bool]
    prepare: Callable[[], None]
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid this stack started, if that process still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def launch(self) -> int:
        """Start the process, its output written through `deploy.rotate` (it ends when the process does)."""
        self.prepare()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        rotate = subprocess.Popen(
            [sys.executable, "-m", "deploy.rotate", str(self.log_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # holding the caller's stderr would keep `deploy/stack start | ...` open
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        assert rotate.stdin is not None
        rotate.stdin.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
        rotate.stdin.flush()
        proc = subprocess.Popen(
            self.command,
            stdout=rotate.stdin,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.state_dir,
            start_new_session=True,
        )
        rotate.stdin.close()  # the service holds the pipe now
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid


class Stack:
    """The metastore, Kafka, HBase, its Thrift server, memcached and Prometheus, configured from `readnext.config`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        st = config.stack
        self.state = st.state_dir
        jars = st.jars_dir
        kafka_host, kafka_port = _host_port(config.kafka.bootstrap_servers)
        self.kafka_host, self.kafka_port = kafka_host, kafka_port
        conf = self.state / "conf"
        self.services = [
            Service(
                name="metastore",
                address=f"127.0.0.1:{st.derby_port} (Derby)",
                command=java(
                    self.state,
                    st.derby_heap,
                    [jars / "derby" / "*"],
                    "org.apache.derby.drda.NetworkServerControl",
                    ["start", "-h", "127.0.0.1", "-p", str(st.derby_port), "-noSecurityManager"],
                    [f"-Dderby.system.home={self.state / 'metastore-db'}"],
                ),
                ready=lambda: _port_open("127.0.0.1", st.derby_port),
                prepare=self._prepare_derby,
                state_dir=self.state,
            ),
            Service(
                name="kafka",
                address=f"{kafka_host}:{kafka_port}",
                command=java(
                    self.state,
                    st.kafka_heap,
                    [jars / "kafka" / "*"],
                    "kafka.Kafka",
                    [str(conf / "kafka.properties")],
                    [],
                ),
                ready=self._kafka_ready,
                prepare=self._prepare_kafka,
                state_dir=self.state,
            ),
            Service(
                name="hbase",
                address=f"127.0.0.1:{st.zookeeper_port} (ZooKeeper)",
                command=java(
                    self.state,
                    st.hbase_heap,
                    [conf / "hbase", jars / "hbase" / "*"],
                    "org.apache.hadoop.hbase.master.HMaster",
                    ["start"],
                    HBASE_JDK17_FLAGS,
                ),
                ready=self._hbase_ready,
                prepare=self._prepare_hbase,
                state_dir=self.state,
            ),
            Service(
                name="thrift",
                address=f"{config.hbase.host}:{config.hbase.port}",
                command=java(
                    self.state,
                    st.thrift_heap,
                    [conf / "hbase", jars / "hbase" / "*"],
                    "org.apache.hadoop.hbase.thrift.ThriftServer",
                    [
                        "-threadpool",
                        "-b",
                        config.hbase.host,
                        "-p",
                        str(config.hbase.port),
                        "--infoport",
                        str(st.thrift_info_port),
                        "start",
                    ],
                    HBASE_JDK17_FLAGS,
                ),
                ready=self._thrift_ready,
                prepare=self._prepare_hbase,
                state_dir=self.state,
            ),
        ]
        self.warnings: list[str] = []
        if st.memcached and shutil.which("memcached"):
            self.services.append(
                Service(
                    name="memcached",
                    address=f"127.0.0.1:{st.memcached_port}",
                    command=[
                        "memcached",
                        *(["-u", "root"] if os.geteuid() == 0 else []),  # it refuses root otherwise
                        "-l",
                        "127.0.0.1",
                        "-p",
                        str(st.memcached_port),
                        "-U",
                        "0",
                        "-m",
                        str(st.memcached_memory_mb),
                    ],
                    ready=lambda: _port_open("127.0.0.1", st.memcached_port),
                    prepare=lambda: None,
                    state_dir=self.state,
                )
            )
        elif st.memcached:
            self.warnings.append(
                "memcached: not installed (deploy/setup installs Debian's memcached); each web worker "
                "counts rate limits on its own"
            )
        port = config.metrics.prometheus_port
        if st.prometheus and shutil.which("prometheus"):
            self.services.append(
                Service(
                    name="prometheus",
                    address=f"127.0.0.1:{port}",
                    command=prometheus.command(conf / "prometheus", self.state / "prometheus", port),
                    ready=lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready"),
                    prepare=lambda: prometheus.write(config, conf / "prometheus"),
                    state_dir=self.state,
                )
            )
        elif st.prometheus:
            self.warnings.append("prometheus: not installed (deploy/setup installs Debian's prometheus)")

    # --- configuration files -------------------------------------------------------------

    def _write_common(self) -> None:
        conf = self.state / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "log4j2.xml").write_text(LOG4J2_XML)

    def _prepare_derby(self) -> None:
        self._write_common()
        self._require_jars("derby", "derbynet-*.jar")
        (self.state / "metastore-db").mkdir(parents=True, exist_ok=True)

    def _require_jars(self, name: str, pattern: str) -> None:
        folder = self.config.stack.jars_dir / name
        if not any(folder.glob(pattern)):
            raise StackError(f"{name} jars missing in {folder}: run deploy/setup (or make setup) first")

    def _prepare_kafka(self) -> None:
        self._write_common()
        self._require_jars("kafka", "kafka_2.13-*.jar")
        data = self.state / "kafka" / "data"
        ctrl = self.config.stack.kafka_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.kafka_host}:{ctrl}",
            "listeners": f"PLAINTEXT://{self.kafka_host}:{self.kafka_port},CONTROLLER://{self.kafka_host}:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://{self.kafka_host}:{self.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        path = self.state / "conf" / "kafka.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (data / "meta.properties").exists():
            self._format_kafka(path)

    def _format_kafka(self, props: Path) -> None:
        """Format KRaft storage once, with a fresh cluster id."""
        cluster_id = kafka_cluster_id()
        log = self.state / "logs" / "kafka-format.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            "java",
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={self.state / 'conf' / 'log4j2.xml'}",
            "-cp",
            str(self.config.stack.jars_dir / "kafka" / "*"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ]
        with log.open("wb") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if rc != 0:
            raise StackError(f"formatting Kafka storage failed (exit {rc}); see {log}")

    def _prepare_hbase(self) -> None:
        self._write_common()
        self._require_jars("hbase", "hbase-server-*.jar")
        root = self.state / "hbase"
        site = {
            "hbase.cluster.distributed": "false",
            "hbase.rootdir": (root / "root").as_uri(),
            "hbase.tmp.dir": str(root / "tmp"),
            "hbase.zookeeper.quorum": "127.0.0.1",
            "hbase.zookeeper.property.clientPort": str(self.config.stack.zookeeper_port),
            "hbase.zookeeper.property.dataDir": str(root / "zookeeper"),
            "hbase.unsafe.stream.capability.enforce": "false",
            "hbase.master.ipc.address": "127.0.0.1",
            "hbase.regionserver.ipc.address": "127.0.0.1",
            "hbase.master.hostname": "127.0.0.1",
            "hbase.unsafe.regionserver.hostname": "127.0.0.1",
            "hbase.master.info.port": "-1",
            "hbase.regionserver.info.port": "-1",
            # happybase pools keep connections open between requests: don't drop them after 60 s.
            "hbase.thrift.server.socket.read.timeout": "86400000",
            "hbase.thrift.info.bindAddress": "127.0.0.1",
        }
        conf = self.state / "conf" / "hbase"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "hbase-site.xml").write_text(_site_xml(site))

    # --- readiness probes ----------------------------------------------------------------

    def _kafka_ready(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        if not _port_open(self.kafka_host, self.kafka_port):
            return False
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.config.kafka.bootstrap_servers, request_timeout_ms=5000)
        except (KafkaError, OSError):
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def _hbase_ready(self) -> bool:
        """The master's in-process ZooKeeper answers; the Thrift probe then checks HBase itself."""
        return _port_open("127.0.0.1", self.config.stack.zookeeper_port)

    def _thrift_ready(self) -> bool:
        """HBase lists its tables through the Thrift server, as happybase clients will."""
        import happybase

        if not _port_open(self.config.hbase.host, self.config.hbase.port):
            return False
        try:
            conn = happybase.Connection(self.config.hbase.host, self.config.hbase.port, timeout=10_000)
            try:
                conn.tables()
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - any transport or HBase error here means "not yet"
            return False
        return True

    # --- commands ------------------------------------------------------------------------

    def status(self) -> list[tuple[str, int | None, str]]:
        """(name, pid or None, address) for each service."""
        return [(s.name, s.pid(), s.address) for s in self.services]

    def start(self, echo: Callable[[str], None] = print) -> None:
        """Start what is not running and wait for each service to answer; a no-op on a running stack."""
        timeout = self.config.stack.start_timeout_s
        for warning in self.warnings:
            echo(f"warning: {warning}")
        for svc in self.services:
            if svc.pid() is not None:
                echo(f"{svc.name}: already running (pid {svc.pid()})")
                continue
            host, port = _host_port(svc.address.split(" ")[0])
            if _port_open(host, port):
                raise StackError(
                    f"{svc.name}: {svc.address} is already taken by a process this stack did not start; "
                    "stop it or change the port in the configuration"
                )
            t0 = time.monotonic()
            pid = svc.launch()
            echo(f"{svc.name}: starting (pid {pid}, log {svc.log_file})")
            while not svc.ready():
                if svc.pid() is None:
                    raise StackError(f"{svc.name} exited during start-up; see {svc.log_file}")
                if time.monotonic() - t0 > timeout:
                    raise StackError(f"{svc.name} did not answer within {timeout} s; see {svc.log_file}")
                time.sleep(0.5)
            echo(f"{svc.name}: ready at {svc.address} in {time.monotonic() - t0:.1f} s")

    def stop(self, echo: Callable[[str], None] = print, timeout_s: float = 60, names: Collection[str] = ()) -> None:
        """Stop the processes this stack started (from their pid files), newest first; only `names` if given.

        `start` then starts again just what was stopped: a restart of one server, as the fault tests do.
        """
        unknown = set(names) - {s.name for s in self.services}
        if unknown:
            raise StackError(f"no such service: {', '.join(sorted(unknown))}")
        for svc in reversed(self.services):
            if names and svc.name not in names:
                continue
            pid = svc.pid()
            if pid is None:
                svc.pid_file.unlink(missing_ok=True)
                echo(f"{svc.name}: not running")
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                while pid_alive(pid):
                    time.sleep(0.1)
                echo(f"{svc.name}: killed (pid {pid}) after {timeout_s:.0f} s")
            else:
                echo(f"{svc.name}: stopped (pid {pid})")
            svc.pid_file.unlink(missing_ok=True)


LAYERS = {"speed": "speed job", "batch": "batch service", "web": "web server"}


def layers_status(config: Config) -> list[str]:
    """Whether the layers' processes run (deploy/service's pid files), the generation's age, the speed layer's lag."""
    lines = []
    for name, what in LAYERS.items():
        try:
            pid = int((config.stack.state_dir / "run" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            pid = None
        running = pid is not None and pid_alive(pid)
        lines.append(f"{what:14s} {'running' if running else 'stopped':8s} pid {pid if running else '-'}")
    try:
        store = artifacts.open_store(config)
        current = artifacts.current_generation(store)
        if current is None:
            lines.append("generation     none published yet (python -m batch_layer run)")
        else:
            age = artifacts.age_s(artifacts.load_manifest(store, current))
            lines.append(f"generation     {current}, {age / 60:.0f} min old")
    except Exception as e:  # noqa: BLE001 - a status line, not a failure
        lines.append(f"generation     unknown: {e}")
    try:
        lag = query_prometheus(config, "readnext:speed_consumer_lag_records:max")
        lines.append(f"speed lag      {'no data yet' if lag is None else f'{lag:.0f} ratings behind Kafka'}")
    except OSError:
        lines.append("speed lag      unknown: Prometheus does not answer")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("services", nargs="*", help="stop: only these (start then starts them again)")
    args = parser.parse_args(argv)
    if args.services and args.command != "stop":
        parser.error(f"{args.command} takes no service names: start starts whatever is not running")
    stack = Stack(load_config())
    try:
        if args.command == "start":
            stack.start()
            init(stack.config)
            print("topics and HBase tables: in place (python -m deploy.init)")
        elif args.command == "stop":
            stack.stop(names=args.services)
        else:
            down = 0
            for name, pid, address in stack.status():
                print(f"{name:10s} {'up' if pid else 'down':5s} {address:28s} pid {pid or '-'}")
                down += pid is None
            for line in layers_status(stack.config):
                print(line)
            return 1 if down else 0
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
