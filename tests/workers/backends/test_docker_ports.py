"""PortAllocator: host ports for sandboxes, never handed out twice, across instances and processes."""

from __future__ import annotations

import multiprocessing
import socket

import pytest

from workers._ports import RANGES, PortAllocator, PortsExhausted


def test_ports_come_from_the_range_of_their_purpose(tmp_path):
    with PortAllocator(str(tmp_path)) as ports:
        for kind, (low, high) in RANGES.items():
            assert low <= ports.allocate(kind) <= high  # type: ignore[arg-type]


def test_two_instances_never_share_a_port(tmp_path):
    ranges = {"exec": (31000, 31049)}
    a, b = PortAllocator(str(tmp_path), ranges=ranges), PortAllocator(str(tmp_path), ranges=ranges)
    got_a = [a.allocate() for _ in range(25)]
    got_b = [b.allocate() for _ in range(25)]
    assert len(set(got_a) | set(got_b)) == 50
    with pytest.raises(PortsExhausted):
        a.allocate()
    a.close()
    b.close()


def test_release_and_close_give_ports_back(tmp_path):
    ranges = {"exec": (31100, 31100)}
    a, b = PortAllocator(str(tmp_path), ranges=ranges), PortAllocator(str(tmp_path), ranges=ranges)
    port = a.allocate()
    with pytest.raises(PortsExhausted):
        b.allocate()
    a.release(port)
    assert b.allocate() == port
    b.close()
    assert a.allocate() == port
    a.close()


def test_a_port_something_listens_on_is_skipped(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with PortAllocator(str(tmp_path), ranges={"exec": (taken, taken)}) as ports:
            with pytest.raises(PortsExhausted):
                ports.allocate()
            assert not ports.reserve(taken)


def _allocate_in_child(lock_dir: str, count: int, out: "multiprocessing.Queue[list[int]]",
                       go: "multiprocessing.synchronize.Event", done: "multiprocessing.synchronize.Event") -> None:
    ports = PortAllocator(lock_dir, ranges={"exec": (32000, 32199)})
    go.wait()
    out.put([ports.allocate() for _ in range(count)])
    done.wait()  # hold the ports until the parent has compared every process's set
    ports.close()


def test_processes_allocating_at_once_never_share_a_port(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out, go, done = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_allocate_in_child, args=(str(tmp_path), 50, out, go, done)) for _ in range(4)]
    for proc in procs:
        proc.start()
    go.set()
    sets = [out.get(timeout=60) for _ in procs]
    done.set()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert sum(len(s) for s in sets) == 200 and len(set().union(*sets)) == 200


def test_a_dead_process_releases_its_ports(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out, go, done = ctx.Queue(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_allocate_in_child, args=(str(tmp_path), 200, out, go, done))
    child.start()
    go.set()
    assert len(out.get(timeout=60)) == 200
    with PortAllocator(str(tmp_path), ranges={"exec": (32000, 32199)}) as ports:
        with pytest.raises(PortsExhausted):
            ports.allocate()
        child.kill()
        child.join(30)
        assert 32000 <= ports.allocate() <= 32199
