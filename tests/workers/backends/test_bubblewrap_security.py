"""Attacks on the bubblewrap backend's boundaries, each as a sandbox (or a host user) would try it.

Real bwrap, real slirp4netns, a real nats-server; each test names the boundary it proves. The
ones about host identity need a root worker (as `./dev up` runs it) and skip otherwise.
"""

import asyncio
import ipaddress
import json
import os
from pathlib import Path
import shutil
import stat
import sys
import textwrap

import pytest

from protocol import Mount, Resources, SessionSpec, codes
from workers.backends import BackendError
from workers.backends._bwrap_host import readable_by
from workers.backends._bwrap_runtime import executor_python
from workers.backends.bubblewrap import BubblewrapBackend, BubblewrapConfig

from .test_bubblewrap import backend, connect_from, run, sandbox, until  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="host identity is only at stake when the worker is root")
needs_slirp = pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


async def host_run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace")


# ------------------------------------------------------------------ host identity


@needs_root
async def test_a_setuid_copy_made_in_a_sandbox_gives_no_host_user_root(sandbox, backend):
    handle = await sandbox()
    # The sandbox owns its /workspace: it can open it to every host user, then plant a setuid binary.
    out = await run(handle, "chmod 755 /workspace && cp /usr/bin/id /workspace/x && chmod 4755 /workspace/x && echo planted")
    assert out.content == "planted\n"
    planted = backend.sandbox_dir(handle) / "workspace" / "x"
    st = planted.stat()
    assert st.st_uid != 0 and st.st_uid == backend.sandbox_user.uid, "sandbox files belong to the sandbox user"
    code, euid = await host_run(*NOBODY, str(planted), "-u")
    assert code != 0 or euid.strip() == "65534", f"nobody ran the planted binary with euid {euid.strip()}"
    assert os.statvfs(planted).f_flag & os.ST_NOSUID, "the sandboxes' host directory is a nosuid mount"


@needs_root
async def test_sandbox_host_directories_are_private_to_the_sandbox_user(sandbox, backend):
    handle = await sandbox()
    sandbox_dir = backend.sandbox_dir(handle)
    for name in ("workspace", "outputs"):
        st = (sandbox_dir / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (backend.sandbox_user.uid, 0o700)
    for name in ("sandbox.json", "executor.log"):  # the key, and what the executor said: root's alone
        st = (sandbox_dir / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert os.statvfs(sandbox_dir).f_flag & os.ST_NODEV


async def test_binds_inside_the_sandbox_are_nosuid_and_nodev(sandbox):
    handle = await sandbox()
    out = await run(handle, "awk '$5 == \"/workspace\" || $5 == \"/outputs\" || $5 == \"/run/corral\" {print $5, $6}' "
                            "/proc/self/mountinfo")
    mounts = dict(line.split() for line in out.content.splitlines())
    assert set(mounts) == {"/workspace", "/outputs", "/run/corral"}
    assert all({"nosuid", "nodev"} <= set(options.split(",")) for options in mounts.values()), mounts


@needs_root
async def test_a_root_worker_refuses_to_start_without_its_sandbox_user(tmp_path):
    config = BubblewrapConfig(sandbox_user="corral-no-such-user")
    with pytest.raises(BackendError) as info:
        BubblewrapBackend(base_dir=str(tmp_path), worker_id="wx", config=config)
    assert "corral-no-such-user" in str(info.value) and "useradd" in str(info.value)
    assert "./dev setup" in str(info.value)


@needs_root
async def test_a_mount_source_the_sandbox_user_cannot_read_is_invalid_spec(backend, tmp_path):
    private = tmp_path / "private"  # pytest's tmp_path is under a 0700 directory of root's
    private.mkdir()
    backend.allowed_mounts = (str(tmp_path),)
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(mounts=[Mount(source=str(private), target="/private")]))
    assert info.value.code == codes.INVALID_SPEC and "sandbox user" in str(info.value)


async def test_the_executor_runs_on_a_python_the_sandbox_user_can_read_not_the_workers_tree(sandbox, backend):
    user = backend.sandbox_user
    python = executor_python(user.uid, user.gid)
    assert readable_by(python.executable, user.uid, user.gid, execute=True)
    handle = await sandbox()
    out = await run(handle, f"readlink /proc/$PPID/exe; test -e {sys.prefix} || echo no-venv; "
                            f"test -e {Path(__file__).parents[3]} || echo no-checkout")
    exe, *rest = out.content.splitlines()
    assert os.path.realpath(exe) == os.path.realpath(python.executable)
    if not sys.prefix.startswith("/usr"):
        assert rest == ["no-venv", "no-checkout"]


# ------------------------------------------------------------------ seccomp

SYSCALL_PROBE = textwrap.dedent("""\
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    numbers = {"x86_64": {"keyctl": 250, "io_uring_setup": 425, "mount": 165},
               "aarch64": {"keyctl": 219, "io_uring_setup": 425, "mount": 40}}[os.uname().machine]
    params = (ctypes.c_uint * 32)()
    args = {"keyctl": (0, -3, 0), "io_uring_setup": (8, ctypes.addressof(params)),
            "mount": (b"none", b"/tmp", b"tmpfs", 0, None)}
    for name, nr in numbers.items():
        rc = libc.syscall(nr, *args[name])
        print(name, errno.errorcode.get(ctypes.get_errno(), "ok") if rc < 0 else "ok")
""")


async def test_sandboxes_run_under_a_seccomp_filter(sandbox):
    handle = await sandbox()
    out = await run(handle, "grep '^Seccomp:' /proc/self/status")
    assert out.content.split() == ["Seccomp:", "2"]


async def test_the_filter_denies_namespaces_keyrings_io_uring_and_mounts(sandbox):
    handle = await sandbox()
    await run(handle, f"cat > /tmp/probe.py <<'EOF'\n{SYSCALL_PROBE}EOF")
    out = await run(handle, "python3 /tmp/probe.py; unshare -U true 2>&1; setarch -R true 2>&1; true")
    lines = out.content.splitlines()
    assert lines[:3] == ["keyctl EPERM", "io_uring_setup EPERM", "mount EPERM"]
    assert "Operation not permitted" in lines[3], "unshare"
    assert "Operation not permitted" in lines[4], "personality(ADDR_NO_RANDOMIZE)"


async def test_everyday_tools_still_work_under_the_filter(sandbox):
    handle = await sandbox()
    script = " && ".join([
        "python3 -c 'import threading, subprocess, asyncio; t = threading.Thread(target=print); t.start(); t.join(); "
        "subprocess.run([\"true\"], check=True); asyncio.run(asyncio.sleep(0)); print(\"python ok\")'",
        "bash -c 'echo $((6 * 7))'",
        "git init -q repo && git -C repo -c user.email=a@b -c user.name=a commit -q --allow-empty -m x "
        "&& git -C repo log --format=%s",
        "(python3 -m pip --version >/dev/null 2>&1 || ! test -d /usr/lib/python3/dist-packages/pip) && echo pip ok",
        "if command -v gcc >/dev/null; then printf 'int main(void){return 7;}' > m.c && gcc m.c -o m; ./m; echo gcc $?; "
        "else echo gcc 7; fi",
    ])
    out = await run(handle, script, timeout_s=60)
    assert out.content.splitlines() == ["", "python ok", "42", "x", "pip ok", "gcc 7"], out.content


# ------------------------------------------------------------------ the executor channel


async def test_the_sandbox_cannot_see_or_replace_the_executor_socket(sandbox, backend):
    handle = await sandbox()
    out = await run(handle, "find /run /tmp /workspace /outputs -type s 2>/dev/null; ls -A /run/corral | grep -c sock; "
                            "ln -sf /var/run/docker.sock /run/corral/executor.sock 2>/dev/null; echo replaced=$?")
    assert out.content.splitlines() == ["0", "replaced=1"], out.content
    assert (await run(handle, "echo still the real executor")).content == "still the real executor\n"
    host_socket = Path(handle.socket_path)
    assert stat.S_ISSOCK(host_socket.lstat().st_mode) and host_socket.lstat().st_uid == os.geteuid()
    assert backend.sandbox_dir(handle) not in host_socket.parents
    parent = host_socket.parent.stat()
    assert parent.st_uid == os.geteuid() and stat.S_IMODE(parent.st_mode) == 0o700


# ------------------------------------------------------------------ egress


@pytest.fixture
async def any_address_server():
    """A TCP server on every host address; counts connections."""
    seen = []

    async def on_connect(reader, writer):
        seen.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "0.0.0.0", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()


def host_ipv4_addresses() -> list[str]:
    """The host's own non-loopback IPv4 addresses, as `ip` reports them (independent of the backend's reading)."""
    import subprocess

    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])
            if not ipaddress.ip_address(a["local"]).is_loopback]


@needs_slirp
async def test_egress_cannot_reach_the_hosts_loopback(sandbox, nats_server):
    handle = await sandbox(network="egress")
    for host in ("127.0.0.1", "10.0.2.2"):  # its own loopback, and slirp's alias for the host's
        assert "connected" not in await connect_from(handle, nats_server.port, host), host


@needs_slirp
async def test_egress_cannot_reach_the_hosts_other_addresses(sandbox, any_address_server):
    port, seen = any_address_server
    addresses = host_ipv4_addresses()
    if not addresses:
        pytest.skip("the host has no non-loopback IPv4 address")
    handle = await sandbox(network="egress")
    for address in addresses:
        assert "connected" not in await connect_from(handle, port, address), address
    assert seen == []


@needs_slirp
async def test_egress_has_an_interface_a_default_route_and_dns_it_cannot_unfence(sandbox):
    handle = await sandbox(network="egress")
    out = await run(handle, "ip -4 -br addr show tap0; ip -4 route show default; grep nameserver /etc/resolv.conf; "
                            "ip route flush type prohibit 2>&1 | tail -1")
    lines = out.content.splitlines()
    assert lines[0].split()[0] == "tap0" and lines[0].split()[2] == "10.0.2.100/24"
    assert lines[1].startswith("default via 10.0.2.2 dev tap0")
    assert lines[2] == "nameserver 10.0.2.3"
    assert "Operation not permitted" in lines[3]


@needs_slirp
async def test_egress_resolves_names_through_slirp_when_the_host_can(sandbox):
    try:
        await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo("deb.debian.org", 80), 5)
    except (OSError, asyncio.TimeoutError):
        pytest.skip("the host itself cannot resolve names (offline)")
    handle = await sandbox(network="egress")
    out = await run(handle, "getent hosts deb.debian.org >/dev/null && echo resolved")
    assert out.content == "resolved\n"


async def test_network_none_has_no_interface_but_loopback(sandbox):
    handle = await sandbox()
    out = await run(handle, "ls /sys/class/net 2>/dev/null || ip -br link | cut -d' ' -f1")
    assert out.content.split() == ["lo"]


async def test_egress_without_slirp4netns_is_invalid_spec(tmp_path):
    config = BubblewrapConfig(slirp4netns="corral-no-such-slirp4netns")
    async with BubblewrapBackend(base_dir=str(tmp_path), worker_id="wn", config=config) as backend:
        with pytest.raises(BackendError) as info:
            backend.validate(SessionSpec(network="egress"))
    assert info.value.code == codes.INVALID_SPEC and "corral-no-such-slirp4netns" in str(info.value)


ORPHANING_EGRESS_WORKER = """
import asyncio, os, sys
from protocol import SessionSpec
from workers.backends.bubblewrap import BubblewrapBackend

async def main():
    handle = await BubblewrapBackend(base_dir=sys.argv[1], worker_id="wb").create("s-net", SessionSpec(network="egress"))
    print(handle.sandbox_id, flush=True)
    os._exit(0)  # the worker dies; its sandbox and the sandbox's slirp4netns must not

asyncio.run(main())
"""


def slirp_serving(init_pid: int) -> list[int]:
    """slirp4netns processes holding the network namespace of the sandbox whose init is ``init_pid``."""
    netns = os.readlink(f"/proc/{init_pid}/ns/net")
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"slirp4netns" not in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                continue
            if any(os.readlink(fd) == netns for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@needs_slirp
async def test_egress_outlives_the_worker_and_ends_with_the_sandbox(backend, tmp_path):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ORPHANING_EGRESS_WORKER, str(tmp_path / "data"),
                                                stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    [handle] = await backend.list()
    assert handle.sandbox_id == stdout.decode().split()[-1]
    helpers = slirp_serving(handle.pid)
    assert len(helpers) == 1, "one slirp4netns serves the orphaned sandbox"
    out = await run(handle, "ip -4 -br addr show tap0 | cut -c1-4; ip -4 route show default | cut -d' ' -f1-3")
    assert out.content == "tap0\ndefault via 10.0.2.2\n"
    await backend.destroy(handle)
    await until(lambda: not Path(f"/proc/{helpers[0]}").exists() or
                Path(f"/proc/{helpers[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("resources", [Resources(memory_mb=10**9), Resources(pids=1), Resources(pids=31)])
async def test_limits_beyond_the_host_or_below_a_working_minimum_are_invalid_spec(backend, resources):
    spec = SessionSpec(resources=resources)
    with pytest.raises(BackendError) as info:
        backend.validate(spec)
    assert info.value.code == codes.INVALID_SPEC
    with pytest.raises(BackendError) as info:
        await backend.create("s1", spec)
    assert info.value.code == codes.INVALID_SPEC
    assert await backend.list() == []
