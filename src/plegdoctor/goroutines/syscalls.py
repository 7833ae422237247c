"""Syscalls of a goroutine stack: amd64 trap numbers, the wrappers that name a syscall when
Go printed its number inaccurate (`0x7c?`), the raw syscall frames, and `decode_syscall`."""

from __future__ import annotations

from plegdoctor.goroutines.model import Goroutine, StackInfo

# amd64 syscall numbers that matter for runtime stalls (arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS_AMD64: dict[int, str] = {
    0x0: "read",
    0x1: "write",
    0x3: "close",
    0x7: "poll",
    0x8: "lseek",
    0x9: "mmap",
    0x10: "ioctl",
    0x11: "pread64",
    0x12: "pwrite64",
    0x13: "readv",
    0x14: "writev",
    0x17: "select",
    0x1A: "msync",
    0x2C: "sendto",
    0x2D: "recvfrom",
    0x38: "clone",
    0x3A: "vfork",
    0x3B: "execve",
    0x3D: "wait4",
    0x3E: "kill",
    0x48: "fcntl",
    0x4A: "fsync",
    0x4B: "fdatasync",
    0x4D: "ftruncate",
    0x52: "rename",
    0x53: "mkdir",
    0x57: "unlink",
    0xA2: "sync",
    0xA5: "mount",
    0xA6: "umount2",
    0xCA: "futex",
    0xE8: "epoll_wait",
    0xF7: "waitid",
    0x101: "openat",
    0x102: "mkdirat",
    0x106: "newfstatat",
    0x107: "unlinkat",
    0x108: "renameat",
    0x10F: "ppoll",
    0x113: "splice",
    0x119: "epoll_pwait",
    0x11D: "fallocate",
    0x120: "accept4",
    0x132: "syncfs",
    0x13C: "renameat2",
    0x1B3: "clone3",
}

# Wrapper function -> syscall, for when the number is printed inaccurate (`0x7c?`).
SYSCALL_BY_WRAPPER: dict[str, str] = {
    "syscall.Fsync": "fsync",
    "golang.org/x/sys/unix.Fsync": "fsync",
    "internal/poll.(*FD).Fsync": "fsync",
    "os.(*File).Sync": "fsync",
    "syscall.Fdatasync": "fdatasync",
    "golang.org/x/sys/unix.Fdatasync": "fdatasync",
    "go.etcd.io/bbolt.fdatasync": "fdatasync",
    "syscall.Unmount": "umount2",
    "golang.org/x/sys/unix.Unmount": "umount2",
    "syscall.Mount": "mount",
    "golang.org/x/sys/unix.Mount": "mount",
    "golang.org/x/sys/unix.Syncfs": "syncfs",
    "syscall.Sync": "sync",
    "golang.org/x/sys/unix.Sync": "sync",
    "syscall.read": "read",
    "syscall.Read": "read",
    "syscall.write": "write",
    "syscall.Write": "write",
    "syscall.pread": "pread64",
    "syscall.Pread": "pread64",
    "syscall.pwrite": "pwrite64",
    "syscall.Pwrite": "pwrite64",
    "syscall.openat": "openat",
    "syscall.Open": "openat",
    "syscall.wait4": "wait4",
    "syscall.Wait4": "wait4",
    "golang.org/x/sys/unix.Wait4": "wait4",
    "golang.org/x/sys/unix.EpollWait": "epoll_wait",
    "syscall.EpollWait": "epoll_wait",
    "syscall.forkExec": "clone",
    "syscall.rawVforkSyscall": "vfork",
    "golang.org/x/sys/unix.Renameat": "renameat",
    "syscall.Rename": "rename",
    "syscall.Unlinkat": "unlinkat",
    "golang.org/x/sys/unix.Unlinkat": "unlinkat",
}

SYSCALL_FRAMES = frozenset(
    {
        "syscall.Syscall",
        "syscall.Syscall6",
        "syscall.RawSyscall",
        "syscall.RawSyscall6",
        "syscall.rawSyscallNoError",
        "internal/runtime/syscall.Syscall6",
        "runtime/internal/syscall.Syscall6",
        "golang.org/x/sys/unix.Syscall",
        "golang.org/x/sys/unix.Syscall6",
        "golang.org/x/sys/unix.RawSyscall",
        "golang.org/x/sys/unix.RawSyscallNoError",
        "golang.org/x/sys/unix.syscall_syscall",
    }
)


def decode_syscall(g: Goroutine, info: StackInfo) -> str | None:
    """The syscall name: from the accurate trap number of `syscall.Syscall(0xa6, ...)`,
    else from the wrapper frame (e.g. unix.Unmount) when Go printed `0x7c?`."""
    if info.syscall_frame >= 0:
        a = g.arg(info.syscall_frame)
        end = a.find(",")
        word = (a if end < 0 else a[:end]).strip()
        if word.startswith("0x") and not word.endswith("?"):
            try:
                name = SYSCALLS_AMD64.get(int(word, 16))
            except ValueError:
                name = None
            if name:
                return name
    return info.syscall
