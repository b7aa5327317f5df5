"""Free ports for tests: outside the kernel's ephemeral range, each handed out once, blocks free."""

from __future__ import annotations

import socket

from rbee.common.ports import (
    LOCAL_PORT_RANGE_FILE,
    free_port,
    next_free_port,
    port_is_free,
    spare_pool,
)


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


def test_blocks_are_still_found_after_thousands_of_single_ports_were_handed_out() -> None:
    for round_ in range(40):
        singles = [free_port() for _ in range(100)]
        start = free_port(block=64)
        assert all(port_is_free(port) for port in range(start, start + 64)), round_
        assert len(set(singles)) == len(singles)


def test_the_spare_pool_lies_below_the_kernel_range_when_there_is_room() -> None:
    pool = spare_pool(32768, 60999)
    assert pool.stop == 32768 and len(pool) == 12000


def test_the_spare_pool_lies_above_the_kernel_range_when_below_is_too_small() -> None:
    pool = spare_pool(2000, 40000)
    assert pool.start == 40001 and len(pool) == 12000


def test_a_kernel_range_over_every_port_still_leaves_a_pool_to_draw_from() -> None:
    pool = spare_pool(1024, 65535)
    assert len(pool) >= 2000 and pool.start >= 1024 and pool.stop <= 65536
