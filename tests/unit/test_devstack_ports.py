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


def test_a_port_handed_out_is_not_handed_out_again_before_its_server_binds(monkeypatch) -> None:  # noqa: ANN001
    """A test picks the broker's port, then the store's block: the broker is not listening yet,
    so its port looks free, and the block once covered it."""
    import random

    first = free_port_block(1)
    randrange = random.Random.randrange
    over_first = iter([first - 5, first - 5])  # the first two tries: a block over `first`
    monkeypatch.setattr(
        random.Random, "randrange", lambda self, *a: next(over_first, None) or randrange(self, *a)
    )
    base = free_port_block(STORE_PORTS)
    assert first not in range(base, base + STORE_PORTS)
    assert next(over_first, None) is None  # both tries were refused
