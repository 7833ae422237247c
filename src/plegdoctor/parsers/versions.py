"""Output of version commands -> model.Versions (containerd, runc, kernel, kubelet, Go).

The file is what a person or pleg-doctor's collector writes: each command as a `$ <command>`
line followed by its output (versions-containerd-1.7.24-debian13.txt, the header of the real
1.7.24 verification log; versions-mixed-no-headers.txt without `$` lines). Recognised:

- `containerd --version`: `containerd github.com/containerd/containerd[/v2] <version> <revision>`
  (also Docker's `containerd containerd.io 1.6.21 3dce8eb...`);
- `containerd-shim-runc-v2 -v` and `ctr version`: `Version:` and `Go version: go1.x` lines
  (the Go version of the containerd build; `ctr version`'s Server block gives the daemon's
  version);
- `crictl version`: `RuntimeName: containerd` + `RuntimeVersion: 1.7.24`;
- `runc --version`: `runc version 1.1.5+ds1` (`go: go1.19.8` is runc's own Go, not kept);
- `uname -a` (`Linux <host> <release> #...`), `uname -r` (a bare release after `$ uname -r`),
  `/proc/version` (`Linux version <release> (...)`), and a bare kernel release line anywhere
  outside another command's output (`5.10.0-28-amd64`, `6.1.0-18-cloud-amd64`,
  `4.18.0-477.27.1.el8_8.x86_64`): major 3 or more (or 2.6), and three numbers or a
  `-`/`+` suffix, so `1.7.24` (containerd) or `2.0` are never taken for a kernel
  (versions-bare-kernel-release.txt, versions-uname-a-aws.txt);
- `kubelet --version`: `Kubernetes v1.28.2`;
- `go version -m <containerd>`: `/usr/bin/containerd: go1.20.8`;
- pleg-doctor's collector (`versions.txt` of a bundle): `name: value` lines, e.g.
  `kernel: 6.1.0-18-amd64`, `containerd: containerd github.com/containerd/containerd 1.6.20 ...`,
  `containerd_go: go1.19.8`, `runc: runc version 1.1.5`, `kubelet: Kubernetes v1.28.2`
  (versions-collector.txt).

The first value found for each component wins. Lines that are none of these and not a
known detail of them (`commit:`, `Revision:`, other `key: value` lines, `#` comments) are
counted as unread, with one warning naming the first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Ref, Versions, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "versions"

_CMD = re.compile(r"^\$ (.+)$")
_CONTAINERD = lazy_re(r"^containerd (?:github\.com/containerd/containerd(?:/v\d+)?|containerd\.io) (v?\d+\.\d+\S*)")
_RUNC = lazy_re(r"^runc version (\S+)")
_UNAME_A = lazy_re(r"^Linux \S+ (\d+\.\d+\S*) #")
_RELEASE = lazy_re(r"^(\d+\.\d+(?:\.\d+)?[-+._~\w]*)$")
_PROC_VERSION = lazy_re(r"^Linux version (\d+\.\d+\S*) ")
_BARE_KERNEL = lazy_re(r"^((?:[3-9]|[1-9]\d)\.\d+(?:\.\d+(?:[-+][\w.+~-]*)?|[-+][\w.+~-]*)|2\.6\.\d+\S*)$")
# detail lines of known command outputs, and `key: value` lines of the collector we do not keep
_DETAIL = lazy_re(r"^(?:#|[\w .()-]{1,40}:(?:\s|$)|[\w-]+ github\.com/|\S+:$)")
_KUBELET = lazy_re(r"^Kubernetes (v\d+\.\d+\.\d+\S*)$")
_VERSION = lazy_re(r"^\s*Version:\s+(v?\d+\.\d+\S*)")
_GO = lazy_re(r"^\s*Go version:\s+(go\d+\.\d+\S*)")
_GO_M = lazy_re(r"^\S*containerd: (go\d+\.\d+\S*)$")
_CRI_NAME = lazy_re(r"^\s*(?:RuntimeName|runtime_name):\s+\"?(\w+)\"?")
_KEYED = lazy_re(r"^(kernel|containerd|containerd_go|runc|kubelet):\s+(.+)$")
_CRI_VERSION = lazy_re(r"^\s*(?:RuntimeVersion|runtime_version):\s+\"?([^\"\s]+)\"?")


_DOCKER_FIELD = lazy_re(r"^ {1,4}[A-Za-z][\w /().-]{0,40}:(?:\s+\S.*)?$")
_DOCKER_COMPONENT = lazy_re(r"^ {1,2}(Engine|containerd|runc|docker-init):\s*$")


def sniff(lines: list[str]) -> float:
    score = 0.0
    for ln in lines[:200]:
        keyed = _KEYED.match(ln)
        value = keyed.group(2) if keyed else ln
        if _CONTAINERD.match(value) or _RUNC.match(value) or _KUBELET.match(value.strip()):
            score = max(score, 0.85)
        elif _CMD.match(ln) and re.search(r"--version|\bversion\b|uname", ln):
            score = max(score, 0.5)
        elif _UNAME_A.match(ln.strip()) or _PROC_VERSION.match(ln.strip()):
            score = max(score, 0.6)
        elif ln.startswith("Server: Docker Engine"):
            score = max(score, 0.8)  # `docker version`: its Server block names containerd and runc
    data = [ln.strip() for ln in lines if ln.strip()]
    if score == 0.0 and 0 < len(data) <= 5 and _BARE_KERNEL.match(data[0]):
        score = 0.5  # a `uname -r` output saved on its own
    return score


def parse(source: Source, ctx: ParseContext) -> None:
    found: dict[str, str] = {}
    refs: list[Ref] = []
    command = ""
    block = ""  # "client"/"server" inside `ctr version`
    cri_runtime = ""
    component = ""  # the `docker version` Server block's component (Engine, containerd, runc)

    unread = Unread(ctx.report)

    def keep(key: str, value: str, lineno: int, raw: str) -> None:
        if key not in found:
            found[key] = value
            refs.append(Ref(source.display, lineno, quote(raw)))

    for lineno, raw in source.lines():
        line = raw.rstrip()
        if not line.strip():
            continue
        m = _CMD.match(line)
        if m:
            command = m.group(1)
            block = ""
            continue
        stripped = line.strip()
        keyed = _KEYED.match(stripped)
        if keyed:  # the collector's `name: value` form
            name, value = keyed.group(1), keyed.group(2).strip()
            if name == "kernel":
                keep("kernel", value, lineno, raw)
                continue
            if name == "containerd_go" and value.startswith("go"):
                keep("go", value.split()[0], lineno, raw)
                continue
            stripped = value
        if stripped in ("Client:", "Server:") or stripped.startswith(("Client: ", "Server: ")):
            block = stripped.split(":", 1)[0].lower()
            component = ""
            continue
        mc = _DOCKER_COMPONENT.match(line)
        if mc and block == "server":
            component = mc.group(1)  # `docker version`: ` containerd:` then `  Version: 1.4.3`
            continue
        mv = _VERSION.match(line)
        if mv and block == "server" and component in ("containerd", "runc"):
            keep(component, mv.group(1).lstrip("v"), lineno, raw)
            continue
        m = _CONTAINERD.match(stripped)
        if m:
            keep("containerd", m.group(1), lineno, raw)
            continue
        m = _RUNC.match(stripped)
        if m:
            keep("runc", m.group(1), lineno, raw)
            continue
        m = _UNAME_A.match(stripped) or _PROC_VERSION.match(stripped)
        if m:
            keep("kernel", m.group(1), lineno, raw)
            continue
        m = _KUBELET.match(stripped)
        if m:
            keep("kubelet", m.group(1), lineno, raw)
            continue
        m = _GO_M.match(stripped)
        if m:
            keep("go", m.group(1), lineno, raw)
            continue
        m = _GO.match(line)
        if m and "runc" not in command:
            keep("go", m.group(1), lineno, raw)
            continue
        m = _VERSION.match(line)
        if m and ("ctr" in command or "containerd" in command) and block != "client":
            # `ctr version` Server block or `containerd-shim-runc-v2 -v`
            keep("containerd", m.group(1), lineno, raw)
            continue
        m = _CRI_NAME.match(line)
        if m:
            cri_runtime = m.group(1)
            continue
        m = _CRI_VERSION.match(line)
        if m and cri_runtime == "containerd":
            keep("containerd", m.group(1), lineno, raw)
            continue
        if "uname" in command and _RELEASE.match(stripped):
            keep("kernel", stripped, lineno, raw)
            continue
        if (not command or "uname" in command or "kernel" in command) and _BARE_KERNEL.match(stripped):
            keep("kernel", stripped, lineno, raw)  # a bare `uname -r` line pasted without its command
            continue
        if keyed or _DETAIL.match(stripped):
            continue
        if block in ("client", "server") and _DOCKER_FIELD.match(line):
            continue  # `docker version`'s other fields (API version, Git commit, OS/Arch, ...)
        unread(lineno, raw)
    unread.warn()
    if not found:
        ctx.report.warn("no version line recognised")
        return
    ctx.evidence.versions.append(
        Versions(
            kernel=found.get("kernel"),
            containerd=found.get("containerd"),
            kubelet=found.get("kubelet"),
            runc=found.get("runc"),
            go=found.get("go"),
            refs=tuple(refs),
        )
    )
    ctx.report.records += 1
