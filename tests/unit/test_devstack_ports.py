"""The embedded object store's ports: a block of free ports no outgoing connection can take."""

from __future__ import annotations

import socket
from pathlib import Path

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import (
    STORE_PORT_FLAGS,
    STORE_PORTS,
    free_port_block,
    seaweedfs_command,
)


def test_the_store_port_block_is_free_and_below_the_ephemeral_range(tmp_path: Path) -> None:
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    base = free_port_block(STORE_PORTS)
    assert base + STORE_PORTS <= ephemeral
    for port in range(base, base + STORE_PORTS):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if taken
    settings = Settings(data_root=tmp_path, broker_store_url=f"http://127.0.0.1:{base}")
    command = seaweedfs_command(settings, ["tansu"])
    flags = {f"-{flag}={base + i}" for i, flag in enumerate(STORE_PORT_FLAGS)}
    assert flags <= set(command)
