"""The bulk path of the scanner: whole goroutines of a raw dump read in a few C-level passes
when their stack was seen before (a dump of 10^5 goroutines has a few hundred distinct
stacks), and the caches it reads (builder.Caches: `fast`, `known`, `creators`, `tails`).

`read_blocks` takes a goroutine only in the plain shape the line loop (scan.py) would read
as a header, (function line, file line) pairs and an optional `created by` pair, each pair
of a location the loop has already made from the same file line; anything else goes back to
the loop. So what it builds is what the loop would build, only faster.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import cast

from plegdoctor.goroutines.builder import Caches, DumpAssembly
from plegdoctor.goroutines.flags import GP_HEADER
from plegdoctor.goroutines.lines import parse_state, small_int
from plegdoctor.goroutines.model import ARG_SEP, Goroutine, Loc

_tuple_new = tuple.__new__
_BULK = 256  # frames of one goroutine at most on the bulk path
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_THIRD = itemgetter(2)
_PARENS = repeat(")")


def remember(caches: Caches, file_line: str, loc: Loc, created: bool) -> None:
    """The loop made `loc` from `file_line`: record it, and keep the bulk caches true (a file
    line that now means another location invalidates every stack read through it)."""
    old = caches.files.get(file_line)
    caches.files[file_line] = loc
    if old is not None and old is not loc:
        caches.known.clear()
        caches.creators.clear()
    if created or loc[2] == 0:
        caches.fast.pop(file_line, None)
    else:
        caches.fast[file_line] = (loc, loc[0] + "(", slice(len(loc[0]) + 1, -1))


def read_blocks(asm: DumpAssembly, lines: list[str], i: int, base: int) -> int:
    """Whole goroutines, from `lines[i]` (a header, the scanner OUTSIDE a goroutine) on, each
    read in a few C-level passes when it is the plain shape of a raw dump: a header with a
    readable new id; (function line, file line) pairs of known locations (`Caches.fast`: the
    file line's location, its function line starting with that `func(` and ending with `)`:
    exactly the pairs the loop would append unchanged); an optional `created by` pair of a
    known location; its blank line. Line `k` is source line `base + k`. Returns the number
    of lines consumed; 0 when the first goroutine is not of that shape (the loop reads it,
    and fills the caches)."""
    caches = asm.caches
    fast = caches.fast
    files = caches.files
    known = caches.known
    stacks = caches.stacks
    tails = caches.tails
    creators = caches.creators
    ids = asm.ids
    out = asm.goroutines
    n = len(lines)
    start = i
    while i < n:
        header = lines[i]
        if not header.startswith("goroutine "):
            break
        try:
            j = lines.index("", i + 1, i + 2 * _BULK + 4)  # the blank line ending the goroutine
        except ValueError:
            break
        sp = header.find(" ", 10)
        head = tails.get(header[sp:])
        if head is None:
            head = _tail(caches, header, sp)
            if head is None:
                break
        num = header[10:sp]
        if not num.isdigit() or len(num) > 20 or not num.isascii():
            break
        gid = int(num)
        if gid in ids:
            break
        created: Loc | None = None
        parent: int | None = None
        created_in = False
        end = j
        if j - i >= 3 and lines[j - 2].startswith("created by "):
            ckey = (lines[j - 2], lines[j - 1])
            cr = creators.get(ckey)
            if cr is None:
                rest = ckey[0][11:]
                p = rest.find(" in goroutine ")
                if p >= 0:
                    parent = small_int(rest[p + 14 :])
                    rest = rest[:p]
                created = files.get(ckey[1])
                if created is None or created[0] != rest or created[2] == 0:
                    break
                cr = (created, parent, p >= 0)
                if len(creators) < 100_000:
                    creators[ckey] = cr
            created, parent, created_in = cr
            end = j - 2
        if (end - i) % 2 == 0 or end == i + 1:
            break  # not pairs, or no frames
        key = tuple(lines[i + 2 : end : 2])
        hit = known.get(key)
        if hit is None:
            found = list(map(fast.get, key))
            if None in found:
                break
            entries = cast("list[tuple[Loc, str, slice]]", found)
            stack = tuple(map(_FIRST, entries))
            hit = (stacks.setdefault(stack, stack), tuple(map(_SECOND, entries)), tuple(map(_THIRD, entries)))
            if len(known) < 100_000:
                known[key] = hit
        funcs = lines[i + 1 : end : 2]
        if not all(map(str.startswith, funcs, hit[1])) or not all(map(str.endswith, funcs, _PARENS)):
            break
        if created_in:
            asm.created_in = True
        st = head[0]
        flags = st[3]
        if head[1]:
            flags |= GP_HEADER
            asm.gp_header = True
        here = base + i
        if not ids and not out:
            asm.first_line = here
        ids.add(gid)
        out.append(
            _tuple_new(
                Goroutine,
                (
                    gid,
                    st[0],
                    st[1],
                    st[2],
                    hit[0],
                    ARG_SEP.join(map(str.__getitem__, funcs, hit[2])),
                    created,
                    parent,
                    here,
                    flags,
                    0,
                ),
            )
        )
        i = j + 1
    if i > start and base + i - 1 > asm.last_line:
        asm.last_line = base + i - 1  # the blank line of the last goroutine read
    return i - start


def _tail(caches: Caches, header: str, sp: int) -> tuple[tuple[str, int | None, bool, int], bool] | None:
    """What a header says after its id (` [select, 5 minutes]:`, ` gp=0x.. m=.. [..]:`),
    read as `lines.parse_header` reads it: (parsed state, gp= header), or None when the
    header is not readable that way. Cached per text (the same few hundred across a dump)."""
    if sp < 0 or not header.endswith("]:"):
        return None
    tail = header[sp:]
    b = tail.find("[")
    if b < 0:
        return None
    inner = tail[b + 1 : -2]
    states = caches.states
    st = states.get(inner)
    if st is None:
        st = states[inner] = parse_state(inner)
    head = (st, " gp=" in tail)
    if len(caches.tails) < 100_000:
        caches.tails[tail] = head
    return head
