"""deploy/stack: start is idempotent, status tells the truth, stop leaves nothing behind."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from pathlib import Path

import pytest

from deploy.stack import Stack, _host_port, _port_open, main
from readnext.processes import pid_alive
from tests.conftest import run_stack_cli


def _processes_using(folder: Path) -> list[int]:
    """Pids of every live process whose command line mentions `folder`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(folder).encode() in cmdline and pid_alive(int(proc.name)):
                pids.append(int(proc.name))
    return pids


@pytest.mark.stack_lifecycle
def test_start_twice_status_stop_and_restart(stack, config):
    before = stack.status()
    names = ["metastore", "kafka", "hbase", "thrift", "memcached", "prometheus"]  # the last two: Debian's, by setup
    assert [name for name, _, _ in before] == names
    assert all(pid is not None for _, pid, _ in before)

    again = run_stack_cli("start")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == len(names)
    assert stack.status() == before, "a second start must not start anything new"

    status = run_stack_cli("status")
    assert status.returncode == 0
    for name, pid, address in before:
        line = next(row for row in status.stdout.splitlines() if row.startswith(name))
        assert " up " in line and str(pid) in line and address in line

    stopped = run_stack_cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(pid_alive(pid) for _, pid, _ in before)
    assert _processes_using(config.stack.state_dir / "conf") == [], "a server of the stack still runs"
    for address in (
        f"127.0.0.1:{config.stack.derby_port}",
        config.kafka.bootstrap_servers,
        f"{config.hbase.host}:{config.hbase.port}",
        f"127.0.0.1:{config.stack.zookeeper_port}",
        f"127.0.0.1:{config.stack.memcached_port}",
        f"127.0.0.1:{config.metrics.prometheus_port}",
    ):
        assert not _port_open(*_host_port(address)), f"{address} still open after stop"
    down = run_stack_cli("status")
    assert down.returncode == 1 and down.stdout.count(" down ") == len(names)

    restarted = run_stack_cli("start")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert all(pid is not None for _, pid, _ in stack.status())


def test_kafka_storage_formats_even_when_the_first_cluster_id_drawn_starts_with_a_dash(config, tmp_path, monkeypatch):
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))  # base64 "-A…": the storage tool reads an option
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    drawn = iter([dashed, plain])
    monkeypatch.setattr("deploy.stack.uuid.uuid4", lambda: next(drawn))
    isolated = dataclasses.replace(config, stack=dataclasses.replace(config.stack, state_dir=tmp_path))

    Stack(isolated)._prepare_kafka()

    meta = (tmp_path / "kafka" / "data" / "meta.properties").read_text()
    cluster_id = next(line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster.id="))
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")


@pytest.mark.parametrize("command", ["start", "status"])
def test_only_stop_takes_service_names(command, capsys):
    with pytest.raises(SystemExit) as refused:
        main([command, "kafka"])
    assert refused.value.code == 2
    assert f"{command} takes no service names" in capsys.readouterr().err
