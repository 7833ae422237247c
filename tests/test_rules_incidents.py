"""The synthetic incident corpus (tests/incidents/): every incident analyzed end to end.

These incidents were written for the project (each folder's SYNTHETIC.md says what it models
and `expected.json` carries `"synthetic": true`); real incidents copied from public threads are
in tests/corpus/real/ (tests/test_corpus_real.py). Each incident is a directory of evidence in
real formats (journald/klog/logrus logs, goroutine dumps, /proc files, dmesg, configs) and an
`expected.json`:

    {"synthetic": true,
     "class": "<root-cause class of the top cause>",
     "chain_tags": [tags some link of the top chain must carry],
     "chain_details": [substrings some link detail must contain],
     "fix": "substring of one of the top cause's fixes",
     "findings": [rule codes that must fire],
     "next_steps": [substrings of next steps] (optional),
     "summary": [substrings of the top cause's summary] (optional),
     "year": year of the year-less log stamps, as `--year` gives it (optional),
     "needs": [parser kinds the incident needs] (optional)}

Being synthetic, an incident must at least be internally consistent: the
`test_incident_is_internally_consistent` checks below are the properties that can be checked
mechanically (journald receive delays, relist cadence, `last seen` against the relist ticks,
PSI counters and averages, meminfo sums, diskstats counters, one process per pid).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from plegdoctor import parsers
from plegdoctor.model import RootCauseClass
from plegdoctor.pipeline import analyze_paths

HERE = Path(__file__).resolve().parent / "incidents"
INCIDENTS = sorted(p for p in HERE.iterdir() if p.is_dir())
REAL = Path(__file__).resolve().parent / "corpus" / "real"
NOT_EVIDENCE = {"expected.json", "SYNTHETIC.md"}


def _files(incident: Path) -> list[str]:
    return [str(p) for p in sorted(incident.rglob("*")) if p.is_file() and p.name not in NOT_EVIDENCE]


def _expected(incident: Path) -> dict:
    return json.loads((incident / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("incident", INCIDENTS, ids=[p.name for p in INCIDENTS])
def test_incident_diagnosed_end_to_end(incident: Path) -> None:
    exp = _expected(incident)
    missing = sorted(set(exp.get("needs", [])) - parsers.known_kinds())
    if missing:
        pytest.skip(f"parser(s) not in this build yet: {', '.join(missing)}")
    dg = analyze_paths(_files(incident), year=exp.get("year"))
    for inp in dg.inputs:
        assert inp.kind != "unknown", f"{inp.path} not recognised"
    assert dg.root_causes, "no root cause"
    top = dg.root_causes[0]
    assert str(top.cls) == exp["class"], [(str(rc.cls), rc.confidence) for rc in dg.root_causes]
    tags = set().union(*(lk.tags for lk in top.chain)) if top.chain else set()
    for tag in exp.get("chain_tags", []):
        assert any(t == tag or (tag.endswith(":") and t.startswith(tag)) for t in tags), (tag, sorted(tags))
    details = " | ".join(lk.detail for lk in top.chain)
    for sub in exp.get("chain_details", []):
        assert sub in details, (sub, details)
    if "fix" in exp:
        assert any(exp["fix"] in f for f in top.fixes), (exp["fix"], top.fixes)
    codes = {f.code for f in dg.findings}
    for code in exp.get("findings", []):
        assert code in codes, (code, sorted(codes))
    for sub in exp.get("summary", []):
        assert sub in top.summary, (sub, top.summary)
    steps = " ".join(dg.next_steps)
    for sub in exp.get("next_steps", []):
        assert sub in steps, (sub, dg.next_steps)
    if exp["class"] != "unknown":
        # the symptom: the kubelet's relist, or watch's relist probe standing in for it
        assert top.chain[0].process in ("kubelet", "pleg-doctor watch"), "the chain starts with the symptom"
        assert top.confidence >= 0.5


def _real_classes() -> set[str]:
    """`root_cause_class` of every real case (tests/corpus/real/*/expected.json), if any."""
    out: set[str] = set()
    if REAL.is_dir():
        for p in sorted(REAL.glob("*/expected.json")):
            cls = json.loads(p.read_text(encoding="utf-8")).get("root_cause_class")
            if cls:
                out.add(str(cls))
    return out


def test_corpus_covers_every_root_cause_class() -> None:
    """Every root-cause class has an incident: synthetic (here) or real (tests/corpus/real/)
    together. The synthetic set does not have to cover the classes the real corpus covers."""
    classes = {_expected(p)["class"] for p in INCIDENTS} | _real_classes()
    missing = sorted({str(c) for c in RootCauseClass} - classes)
    assert not missing, f"no synthetic or real incident for: {missing}"


def test_corpus_is_small() -> None:
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    assert total < 1_500_000, total


@pytest.mark.parametrize("incident", INCIDENTS, ids=[p.name for p in INCIDENTS])
def test_incident_is_marked_synthetic(incident: Path) -> None:
    assert _expected(incident).get("synthetic") is True, 'expected.json must say "synthetic": true'
    note = incident / "SYNTHETIC.md"
    assert note.is_file(), "SYNTHETIC.md missing"
    text = note.read_text(encoding="utf-8")
    assert "synthetic" in text.lower() and "models" in text.lower(), "SYNTHETIC.md says what it models"


# ---------------------------------------------------------------------------------------
# Internal consistency (what can be checked mechanically)

_JOURNALD = re.compile(r"^([A-Z][a-z]{2}) +(\d+) (\d\d:\d\d:\d\d\.\d{6}) \S+ ([^\s\[]+)\[(\d+)\]: (.*)$")
_KLOG = re.compile(r"^([IWEF])(\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d{6}) +(\d+) ")
_LOGRUS = re.compile(r'(?:time="|"time":")(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z')
_LAST_SEEN = re.compile(r"pleg was last seen active (\S+?) ago")
_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)(?:\.(\d*[1-9]))?s)$")
_MONTHS = {
    m: i + 1 for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
}
_YEAR = 2024  # arithmetic only (differences within one file)


def _go_seconds(text: str) -> float:
    """A Go time.Duration.String() value; Go never prints trailing zeros ("3m1.4s", not "3m1.400s")."""
    m = _GO_DURATION.match(text)
    assert m, f"not a Go duration (as time.Duration.String() prints it): {text!r}"
    h, mi, s, frac = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + int(s or 0) + float(f"0.{frac}" if frac else 0)


class _Line:
    def __init__(self, text: str) -> None:
        self.text = text
        self.journald: datetime | None = None
        self.proc: tuple[str, int] | None = None
        payload = text
        j = _JOURNALD.match(text)
        if j:
            self.journald = datetime.strptime(f"{_YEAR}-{_MONTHS[j[1]]}-{j[2]} {j[3]}", "%Y-%m-%d %H:%M:%S.%f")
            self.proc = (j[4], int(j[5]))
            payload = j[6]
        self.payload = payload
        self.ts: datetime | None = None
        self.klog_pid: int | None = None
        k = _KLOG.match(payload)
        if k:
            self.ts = datetime.strptime(f"{_YEAR}{k[2]}{k[3]} {k[4]}", "%Y%m%d %H:%M:%S.%f")
            self.klog_pid = int(k[5])
        else:
            g = _LOGRUS.search(payload)
            if g:
                whole, _, frac = g[1].partition(".")
                t = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(year=_YEAR)
                self.ts = t + timedelta(microseconds=int((frac + "000000")[:6]))

    @property
    def relist(self) -> bool:
        return "GenericPLEG: Relisting" in self.payload

    @property
    def relist_failed(self) -> bool:
        return "GenericPLEG: Unable to retrieve pods" in self.payload


def _log_files(incident: Path) -> list[tuple[Path, list[_Line]]]:
    out = []
    for p in sorted(incident.rglob("*")):
        if not p.is_file() or p.name in NOT_EVIDENCE:
            continue
        lines = [_Line(t) for t in p.read_text(encoding="utf-8", errors="replace").splitlines()]
        if any(ln.ts for ln in lines):
            out.append((p, lines))
    return out


def _check_journald(path: Path, lines: list[_Line]) -> list[str]:
    """journald stamps when it received the line: after the program's own stamp, by an
    irregular delay (never one constant offset)."""
    errs = []
    delays = []
    for ln in lines:
        if ln.journald is None or ln.ts is None:
            continue
        d = (ln.journald - ln.ts).total_seconds()
        if not 0 <= d < 2:
            errs.append(f"{path.name}: journald stamp {d:+.6f}s from the payload's: {ln.text[:80]}")
        delays.append(round(d, 6))
        if ln.klog_pid is not None and ln.proc and ln.klog_pid != ln.proc[1]:
            errs.append(f"{path.name}: klog pid {ln.klog_pid} under journald {ln.proc[0]}[{ln.proc[1]}]")
    if len(delays) >= 10:
        value, n = Counter(delays).most_common(1)[0]
        if n > len(delays) // 4:
            errs.append(f"{path.name}: {n}/{len(delays)} lines have the same journald delay ({value}s)")
    return errs


def _check_relists(path: Path, lines: list[_Line]) -> list[str]:
    """The relist loop (wait.Until, sliding): a new relist starts >= 1 s after the previous
    one *returned*; `last seen` counts from the start of the last successful relist."""
    errs = []
    ticks = [ln for ln in lines if ln.relist and ln.ts]
    for a, b in itertools.pairwise(ticks):
        gap = (b.ts - a.ts).total_seconds()  # type: ignore[operator]
        if gap < 0.99:
            errs.append(f"{path.name}: relists {gap:.3f}s apart at {b.ts}")
        if gap > 3 and a.ts.microsecond == b.ts.microsecond:  # type: ignore[union-attr]
            errs.append(f"{path.name}: the tick after a {gap:.0f}s gap keeps the previous tick's microseconds")
    # a relist is failed when "Unable to retrieve pods" is logged before the next tick
    failed: set[int] = set()
    current: int | None = None
    for i, ln in enumerate(lines):
        if ln.relist:
            current = i
        elif ln.relist_failed and current is not None:
            failed.add(current)
    tick_index = {id(ln): i for i, ln in enumerate(lines)}
    for ln in lines:
        m = _LAST_SEEN.search(ln.payload)
        if not m or ln.ts is None:
            continue
        seen = _go_seconds(m.group(1))
        if seen < 180:
            errs.append(f"{path.name}: PLEG unhealthy after {seen}s (< the 3m0s threshold)")
        t0 = ln.ts - timedelta(seconds=seen)
        before = [t for t in ticks if t.ts < ln.ts]  # type: ignore[operator]
        if not before or before[0].ts > t0:  # type: ignore[operator]
            continue  # the log does not reach back to the last relist
        ok = [t for t in before if tick_index[id(t)] not in failed]
        near = min(ok, key=lambda t: abs((t.ts - t0).total_seconds()))  # type: ignore[operator]
        off = (near.ts - t0).total_seconds()  # type: ignore[operator]
        later = [t for t in ok if t.ts > t0 + timedelta(seconds=0.05)]  # type: ignore[operator]
        if abs(off) > 0.05:
            errs.append(f"{path.name}: 'last seen {m.group(1)} ago' at {ln.ts:%H:%M:%S.%f} points to no relist tick")
        elif len(later) > 1:
            errs.append(f"{path.name}: 'last seen {m.group(1)} ago' at {ln.ts:%H:%M:%S} but {len(later)} relists since")
    return errs


def _psi_samples(path: Path) -> list[tuple[datetime | None, dict[str, dict[str, float]]]]:
    samples: list[tuple[datetime | None, dict[str, dict[str, float]]]] = []
    when: datetime | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# pleg-doctor sample"):
            when = datetime.fromisoformat(line.split()[3].replace("Z", "+00:00"))
            samples.append((when, {}))
            continue
        kind, _, rest = line.partition(" ")
        if kind in ("some", "full") and "total=" in rest:
            if not samples:
                samples.append((None, {}))
            samples[-1][1][kind] = {k: float(v) for k, v in (f.split("=") for f in rest.split())}
    return samples


def _check_psi(path: Path) -> list[str]:
    """PSI: full <= some; totals (cumulative µs) never go back nor grow faster than the clock;
    each avgN is an exponential average, so it moves towards the stall share by at most
    (1 - e^(-dt/N)) of the way between two samples dt apart."""
    errs = []
    samples = _psi_samples(path)
    for when, s in samples:
        if "some" in s and "full" in s:
            for k in ("avg10", "avg60", "avg300", "total"):
                if s["full"][k] > s["some"][k]:
                    errs.append(f"{path.name} {when}: full {k} > some {k}")
    for (t1, a), (t2, b) in itertools.pairwise(samples):
        if t1 is None or t2 is None:
            continue
        dt = (t2 - t1).total_seconds()
        for kind in set(a) & set(b):
            dtotal = b[kind]["total"] - a[kind]["total"]
            if dtotal < 0:
                errs.append(f"{path.name}: {kind} total went backwards at {t2}")
            if dtotal > dt * 1e6 * 1.01:
                errs.append(f"{path.name}: {kind} total grew {dtotal / 1e6:.1f}s in {dt:.0f}s")
            for n in (10, 60, 300):
                old, new = a[kind][f"avg{n}"], b[kind][f"avg{n}"]
                reach = 1 - math.exp(-dt / n)
                lo, hi = old - old * reach - 0.5, old + (100 - old) * reach + 0.5
                if not lo <= new <= hi:
                    errs.append(f"{path.name}: {kind} avg{n} {old} -> {new} in {dt:.0f}s (possible {lo:.2f}..{hi:.2f})")
    return errs


def _meminfo(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def _check_meminfo(path: Path) -> list[str]:
    m = _meminfo(path)
    errs = []
    total = m.get("MemTotal")
    if total is None:
        return errs
    used = sum(m.get(k, 0) for k in ("MemFree", "Buffers", "Cached", "AnonPages"))
    if used > total:
        errs.append(f"{path.name}: MemFree+Buffers+Cached+AnonPages {used} kB > MemTotal {total} kB")
    for k in ("MemFree", "MemAvailable", "AnonPages", "Cached"):
        if m.get(k, 0) > total:
            errs.append(f"{path.name}: {k} > MemTotal")
    if m.get("MemFree", 0) > m.get("MemAvailable", total):
        errs.append(f"{path.name}: MemFree > MemAvailable")
    if m.get("Dirty", 0) + m.get("Writeback", 0) > m.get("Cached", 0) + m.get("Buffers", 0):
        errs.append(f"{path.name}: Dirty+Writeback exceed the page cache")
    return errs


def _check_diskstats(path: Path) -> list[str]:
    """Counters of every device never go back; a partition's counters never exceed its disk's."""
    errs = []
    snaps: list[dict[str, list[int]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            snaps.append({})
            continue
        f = line.split()
        if len(f) >= 14:
            if not snaps:
                snaps.append({})
            snaps[-1][f[2]] = [int(x) for x in f[3:]]
    counters = [i for i in range(17) if i != 8]  # field 9 (in flight) is a gauge
    for a, b in itertools.pairwise(snaps):
        for dev in set(a) & set(b):
            back = [i + 1 for i in counters if i < len(a[dev]) and b[dev][i] < a[dev][i]]
            if back:
                errs.append(f"{path.name}: {dev} counter field(s) {back} went backwards")
    for snap in snaps:
        for dev, vals in snap.items():
            disk = re.sub(r"(?<=[a-z])\d+$|(?<=\d)p\d+$", "", dev)
            if disk != dev and disk in snap:
                over = [i + 1 for i in (0, 2, 4, 6) if vals[i] > snap[disk][i]]
                if over:
                    errs.append(f"{path.name}: partition {dev} counts more than {disk} (fields {over})")
    return errs


_PID_SOURCES = (
    re.compile(r"INFO: task (?P<name>.+?):(?P<pid>\d+) blocked for more than"),
    re.compile(r"\b(?P<name>containerd|kubelet|dockerd|containerd-shim[-\w]*)\[(?P<pid>\d+)\]:"),
)


def _check_pids(incident: Path) -> list[str]:
    """One pid, one process: journald `name[pid]`, hung-task `name:pid`, dump file names
    (`containerd.<pid>.stacks.log`) and `ps` rows must not give one pid two programs."""
    names: dict[int, set[str]] = {}
    for p in sorted(incident.rglob("*")):
        if not p.is_file() or p.name in NOT_EVIDENCE:
            continue
        m = re.match(r"^(containerd|dockerd|kubelet)\.(\d+)\.stacks\.log$", p.name)
        if m:
            names.setdefault(int(m.group(2)), set()).add(m.group(1))
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            for rx in _PID_SOURCES:
                for g in rx.finditer(line):
                    names.setdefault(int(g["pid"]), set()).add(g["name"].split("/")[0])
            ps = re.match(r"^\s*(\d+)\s+[RSDTZIWX][<NLsl+]*\s+\S+\s+(\S+)", line)
            if ps and p.name.startswith("ps"):
                names.setdefault(int(ps.group(1)), set()).add(Path(ps.group(2)).name.split(":")[0])
    return [f"pid {pid} is {sorted(n)}" for pid, n in sorted(names.items()) if len(n) > 1]


@pytest.mark.parametrize("incident", INCIDENTS, ids=[p.name for p in INCIDENTS])
def test_incident_is_internally_consistent(incident: Path) -> None:
    errs: list[str] = []
    for path, lines in _log_files(incident):
        errs += _check_journald(path, lines)
        errs += _check_relists(path, lines)
    for p in sorted(incident.rglob("*")):
        if not p.is_file() or p.name in NOT_EVIDENCE:
            continue
        head = p.read_text(encoding="utf-8", errors="replace")[:4000]
        if re.search(r"^(some|full) avg10=", head, re.M):
            errs += _check_psi(p)
        if re.search(r"^MemTotal:", head, re.M):
            errs += _check_meminfo(p)
        if re.search(r"^\s*\d+\s+\d+\s+[a-z]+\d*\s+\d+ \d+ \d+ \d+ \d+", head, re.M) and "diskstats" in p.name:
            errs += _check_diskstats(p)
    errs += _check_pids(incident)
    assert not errs, "\n".join(errs)


def test_incidents_do_not_share_node_figures() -> None:
    """Different hosts do not have the same PSI totals or the same meminfo figures: figures
    copied from one incident into another are a synthetic-data slip."""
    totals: dict[float, str] = {}
    mem: dict[tuple[str, int], set[str]] = {}
    errs = []
    for inc in INCIDENTS:
        for p in sorted(inc.rglob("*")):
            if not p.is_file() or p.name in NOT_EVIDENCE:
                continue
            text = p.read_text(encoding="utf-8", errors="replace")
            if re.search(r"^(some|full) avg10=", text, re.M):
                for _, s in _psi_samples(p):
                    for v in s.values():
                        other = totals.setdefault(v["total"], inc.name)
                        if other != inc.name:
                            errs.append(f"PSI total {v['total']:.0f} in {other} and {inc.name}")
            if re.search(r"^MemTotal:", text, re.M):
                for k, v in _meminfo(p).items():
                    mem.setdefault((k, v), set()).add(inc.name)
    pairs = Counter(frozenset(n) for n in mem.values() if len(n) > 1)
    errs += [f"{sorted(n)} share {c} meminfo figures" for n, c in pairs.items() if c >= 3]
    assert not errs, "\n".join(errs)
