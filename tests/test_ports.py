"""Free ports for tests: outside the kernel's ephemeral range, each handed out once, blocks free."""

from __future__ import annotations

import socket

from rbee.common.ports import LOCAL_PORT_RANGE_FILE, free_port, next_free_port, port_is_free


def kernel_range() -> tuple[int, int]:
    low, high = (int(part) for part in LOCAL_PORT_RANGE_FILE.read_text().split())
    return low, high


def test_free_ports_lie_outside_the_range_outgoing_connections_draw_from() -> None:
    low, high = kernel_range()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high, port


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_block_is_free_from_its_first_port_on_and_no_later_port_falls_inside_it() -> None:
    start = free_port(block=16)
    assert all(port_is_free(port) for port in range(start, start + 16))
    later = [free_port() for _ in range(200)]
    assert not [port for port in later if start <= port < start + 16]


def test_the_scan_for_worker_ports_skips_a_port_in_use() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        assert not port_is_free(taken)
        assert next_free_port(taken) != taken
