"""lazy_re: compiled on first use, then the compiled pattern's own methods; what the parser
modules' patterns give does not change (their fixtures and the corpus check that)."""

from __future__ import annotations

import re

from plegdoctor.lazyre import LazyPattern, lazy_re
from plegdoctor.parsers import dmesg


def test_compiled_on_first_use_and_then_bound():
    p = lazy_re(r"(?P<n>\d+) (\w+)", re.I)
    assert "_compiled" not in vars(p)
    assert p.pattern == r"(?P<n>\d+) (\w+)" and "_compiled" not in vars(p)
    m = p.search("x 12 AB")
    assert m is not None and m.groups() == ("12", "AB") and m.group("n") == "12"
    compiled = vars(p)["_compiled"]
    assert vars(p)["search"] == compiled.search  # later calls go straight to the compiled pattern
    assert p.flags == compiled.flags and p.groups == 2 and p.groupindex == {"n": 1}


def test_every_method_gives_what_re_gives():
    text = "a1 b22 c333"
    for lazy_p, eager in ((lazy_re(r"[a-z](\d+)"), re.compile(r"[a-z](\d+)")), (lazy_re(rb"\d"), re.compile(rb"\d"))):
        data = text if isinstance(eager.pattern, str) else text.encode()
        assert [m.span() for m in lazy_p.finditer(data)] == [m.span() for m in eager.finditer(data)]
        assert lazy_p.findall(data) == eager.findall(data)
        assert lazy_p.split(data) == eager.split(data)
        repl = "#" if isinstance(data, str) else b"#"
        assert lazy_p.sub(repl, data) == eager.sub(repl, data) and lazy_p.subn(repl, data) == eager.subn(repl, data)
        assert bool(lazy_p.fullmatch(data)) == bool(eager.fullmatch(data))
        assert bool(lazy_p.match(data)) == bool(eager.match(data))


def test_a_parser_module_compiles_nothing_until_it_reads():
    fresh = [v for v in vars(dmesg).values() if isinstance(v, LazyPattern)]
    assert len(fresh) >= 10
    # a pattern no test has used yet in this process is still uncompiled; reading compiles it
    p = LazyPattern(r"blocked for more than (\d+) seconds")
    assert "_compiled" not in vars(p) and p.search("task x blocked for more than 120 seconds").group(1) == "120"
