"""Generate a large, realistic goroutine dump for the goroutine-engine benchmark.

Material: the real containerd 1.6.20 and containerd-shim-runc-v2 SIGUSR1 dumps and the
crafted 1.6 stall goroutines in tests/fixtures/goroutines/ (Go 1.19 format, as Debian's
containerd 1.6.20 prints). Output: one containerd dump of ~97 000 goroutines (real
goroutines replicated with fresh ids, heap addresses and wait minutes, plus an injected
stall: thousands of CRI ListContainers/ContainerStatus waiting on a container status lock
held by UpdateContainerResources, which waits for bbolt's writer lock held by a content
commit in fsync, and bbolt waiters behind it), then a shim dump between BEGIN/END markers
with a Delete stuck in umount2. ~69 MB for 100 000 goroutines.

    python bench/gen_goroutine_dump.py OUT [--goroutines 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "goroutines"
ADDR = re.compile(r"0xc0[0-9a-f]{8}")
HEADER = re.compile(r"^goroutine (\d+) \[([^\]]*)\]:$")
BLOCKED = ("chan receive", "select", "IO wait", "semacquire", "sync.Cond.Wait", "syscall", "sleep")


def blocks(path: Path) -> list[str]:
    text = path.read_text()
    text = text.replace("=== BEGIN goroutine stack dump ===\n", "").replace("\n=== END goroutine stack dump ===", "")
    return [b.strip("\n") for b in text.split("\n\n") if HEADER.match(b.split("\n", 1)[0])]


def retag(block: str, gid: int, rng: random.Random, minutes: int | None) -> str:
    first, _, rest = block.partition("\n")
    m = HEADER.match(first)
    assert m is not None
    state = m.group(2).split(", ")[0]
    if minutes is None and state in BLOCKED and rng.random() < 0.6:
        minutes = rng.randint(1, 40)
    head = f"goroutine {gid} [{state}" + (f", {minutes} minutes" if minutes else "") + "]:"
    rest = ADDR.sub(lambda _m: f"0xc0{rng.getrandbits(32):08x}", rest)
    return head + "\n" + rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--goroutines", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    real = blocks(FIX / "containerd-1.6.20-go1.19-with-cri-pod-raw.txt") + blocks(
        FIX / "containerd-1.6.20-go1.19-sigusr1-raw.txt"
    )
    stall: dict[int, str] = {}
    for b in blocks(FIX / "containerd-1.6-stall-go1.19-raw.txt"):
        m = HEADER.match(b.split("\n", 1)[0])
        assert m is not None
        stall[int(m.group(1))] = b
    shim_real = blocks(FIX / "shim-runc-v2-1.6.20-sigusr1-raw-markers.txt")
    shim_stall = blocks(FIX / "shim-runc-v2-1.6-delete-umount-raw.txt")
    total = args.goroutines
    n_shim = total // 33
    n_containerd = total - n_shim
    out: list[str] = []
    gid = 1
    # the stall: holders keep their fixed addresses so the wait graph can match them
    ucr = stall[1723].replace("goroutine 1723 [semacquire, 3 minutes]", f"goroutine {gid} [semacquire, 41 minutes]")
    out.append(ucr)
    gid += 1
    out.append(stall[1268].replace("goroutine 1268 [syscall, 3 minutes]", f"goroutine {gid} [syscall, 42 minutes]"))
    gid += 1
    out.append(retag(stall[1654], gid, rng, 40))
    gid += 1
    waiters = [stall[1665], stall[1690], stall[1701]]
    for _ in range(n_containerd // 100):  # 1% of containerd: CRI list/status calls queued on the status lock
        _, _, rest = rng.choice(waiters).partition("\n")
        out.append(f"goroutine {gid} [semacquire, {rng.randint(1, 41)} minutes]:\n{rest}")
        gid += 1
    for _ in range(n_containerd // 200):  # bbolt writers queued behind the commit
        _, _, rest = stall[1802].partition("\n")
        out.append(f"goroutine {gid} [semacquire, {rng.randint(1, 42)} minutes]:\n{rest}")
        gid += 1
    while gid <= n_containerd:
        out.append(retag(rng.choice(real), gid, rng, None))
        gid += 1
    shim: list[str] = [shim_stall[0]] if shim_stall else []
    sid = 2000
    for b in shim_stall[1:]:
        shim.append(b)
    while len(shim) < n_shim:
        shim.append(retag(rng.choice(shim_real), sid, rng, None))
        sid += 1
    with open(args.out, "w") as fh:
        fh.write("\n\n".join(out))
        fh.write("\n\n=== BEGIN goroutine stack dump ===\n")
        fh.write("\n\n".join(shim))
        fh.write("\n\n=== END goroutine stack dump ===\n")
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {len(out) + len(shim)} goroutines, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
