"""The seccomp filter of bubblewrap sandboxes, compiled with libseccomp and handed to ``bwrap --seccomp``.

Default allow; the syscalls a sandboxed agent has no business making fail with EPERM. The list
follows what Docker's default profile denies to a container without capabilities: mounts and
namespaces, kernel modules and kexec, keyrings, BPF and perf, userfaultfd, io_uring, clock and
swap changes, file handles, TIOCSTI/TIOCLINUX (typing into another terminal), personality flags
that switch ASLR off, and the x32 ABI (a second syscall table that would slip past the numbers
checked here). ``clone3`` answers ENOSYS, as under Docker, so glibc falls back to ``clone``, whose
namespace flags can be checked. 32-bit x86 syscalls go through the same rules.

libseccomp (Debian ``libseccomp2``) resolves names to numbers per architecture and writes the
classic-BPF program; we compile it once per backend and give every sandbox its own copy in a memfd.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ._base import BackendError

DENIED = (
    # mounts and the new mount API
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    # namespaces
    "unshare", "setns",
    # the machine itself
    "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "acct", "iopl", "ioperm", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    # kernel attack surface a sandbox does not need
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at",
    "name_to_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register", "nfsservctl", "uselib",
)
NOT_IMPLEMENTED = ("clone3",)
"""Answered ENOSYS: its flags live in memory a filter cannot read; callers fall back to clone(2)."""
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: clone(2) with any of them is denied."""
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
PERSONALITY_FLAGS = (0x0040000, 0x0100000, 0x0200000, 0x0400000)
"""ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC: personality(2) setting one is denied."""
PERSONALITY_QUERY_BIT = 0x80000000
"""Set only in personality(0xffffffff), the query: masking it in lets the query through."""
COMPAT_ARCHES = {"x86_64": "x86", "aarch64": "arm"}
"""32-bit ABIs of a 64-bit host: given the same rules (the x32 ABI is refused as a bad architecture)."""

_ALLOW = 0x7FFF0000
_ATTR_ACT_BADARCH = 2
_CMP_MASKED_EQ = 7
_NR_ERROR = -1


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise BackendError("the bubblewrap backend's seccomp filter needs libseccomp "
                           "(Debian package 'libseccomp2'; `./dev setup` installs it)") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def compile_filter() -> bytes:
    """The classic-BPF program (an array of struct sock_filter) for this host's architecture."""
    lib = _load()
    ctx = lib.seccomp_init(_ALLOW)
    if not ctx:
        raise BackendError("libseccomp could not create a filter")
    try:
        _check(lib.seccomp_attr_set(ctx, _ATTR_ACT_BADARCH, _errno_action(errno.EPERM)), "set the bad-arch action")
        compat = COMPAT_ARCHES.get(os.uname().machine)
        if compat:
            _check(lib.seccomp_arch_add(ctx, lib.seccomp_arch_resolve_name(compat.encode())), f"add arch {compat}")
        _add_rules(lib, ctx)
        return _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def _add_rules(lib: ctypes.CDLL, ctx: int) -> None:
    eperm = _errno_action(errno.EPERM)
    for name in DENIED:
        _rule(lib, ctx, eperm, name)
    for name in NOT_IMPLEMENTED:
        _rule(lib, ctx, _errno_action(errno.ENOSYS), name)
    for flag in CLONE_NAMESPACE_FLAGS:
        _rule(lib, ctx, eperm, "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        _rule(lib, ctx, eperm, "ioctl", _ArgCmp(1, _CMP_MASKED_EQ, 0xFFFFFFFF, request))
    for flag in PERSONALITY_FLAGS:
        _rule(lib, ctx, eperm, "personality", _ArgCmp(0, _CMP_MASKED_EQ, flag | PERSONALITY_QUERY_BIT, flag))


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: _ArgCmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _NR_ERROR:
        return  # a syscall this libseccomp does not know exists on no architecture it filters
    args = (_ArgCmp * len(conditions))(*conditions) if conditions else None
    _check(lib.seccomp_rule_add_array(ctx, action, number, len(conditions), args), f"add the rule for {name}")


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export the filter")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise BackendError(f"libseccomp could not {what}: {os.strerror(-rc)}")


def filter_fd(program: bytes) -> int:
    """A fresh fd holding the program, positioned at its start, for one ``bwrap --seccomp FD``."""
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
