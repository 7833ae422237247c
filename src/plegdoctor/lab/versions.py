"""containerd builds for the lab: the system's, Debian 13's and Debian unstable's, or a user's binary.

Debian 12 ships containerd 1.6.20 (no overlay `mount_options`: the "before" case). The newer
ones are fetched with `apt-get download` + `dpkg-deb -x` into `<lab>/containerd/<version>/`,
using a private apt configuration under `<lab>/apt/<suite>/` (its own sources list, state and
cache, passed with `-o` options): the system's apt sources and state are never modified. The
archive URI is taken from the system's own Debian sources, so a host behind a mirror uses it.

Each build runs with its own shim (`containerd-shim-runc-v2` from the same package) first on
PATH, and gets the config schema it wants (v2 for 1.x, v3 for 2.x).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plegdoctor.errors import UserError
from plegdoctor.knowledge import BBOLT_NO_SYNC, MOUNT_OPTIONS, ContainerdVersion

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_ETC = Path("/etc/apt")

# lab name -> Debian suite it comes from ("system" = whatever is installed)
SUITES: dict[str, str] = {"1.6": "system", "1.7": "trixie", "2.1": "sid"}
ALIASES: dict[str, str] = {"system": "1.6", "bookworm": "1.6", "trixie": "1.7", "sid": "2.1", "unstable": "2.1"}


@dataclass(frozen=True, slots=True)
class ContainerdBuild:
    """One containerd build the lab can run."""

    key: str  # the lab's short name: 1.6, 1.7, 2.1 or a path
    version: str  # upstream version, e.g. 1.7.24
    package_version: str  # e.g. 1.7.24~ds1-6+deb13u1 ('' for a user's binary)
    binary: Path
    shim_dir: Path  # put first on PATH: holds containerd-shim-runc-v2
    source: str  # system | trixie | sid | user

    @property
    def parsed(self) -> ContainerdVersion | None:
        """The version in knowledge's one model; None for a build whose version says nothing."""
        try:
            return ContainerdVersion.parse(self.version)
        except UserError:
            return None

    @property
    def config_schema(self) -> int:
        v = self.parsed
        return 3 if v is not None and v.major >= 2 else 2

    @property
    def supports_mount_options(self) -> bool:
        """Overlay `mount_options` (hence `volatile`): knowledge.MOUNT_OPTIONS (1.6.24, 1.7.4, 2.0)."""
        v = self.parsed
        return v is not None and MOUNT_OPTIONS.contains(v)

    @property
    def supports_bbolt_no_sync(self) -> bool:
        """bbolt `no_sync`: knowledge.BBOLT_NO_SYNC (2.1.0)."""
        v = self.parsed
        return v is not None and BBOLT_NO_SYNC.contains(v)


def binary_version(binary: Path) -> str:
    """`containerd --version` -> '1.7.24~ds1' (the third word), with a deadline."""
    try:
        cp = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"cannot run {binary} --version: {exc}") from None
    words = cp.stdout.split()
    if cp.returncode != 0 or len(words) < 3 or not words[0].startswith("containerd"):
        raise UserError(f"{binary} does not look like containerd: {cp.stdout.strip() or cp.stderr.strip()}")
    return words[2]


def _upstream(package_version: str) -> str:
    m = re.match(r"(\d+\.\d+\.\d+)", package_version)
    return m.group(1) if m else package_version


def system_build() -> ContainerdBuild:
    binary = shutil.which("containerd")
    if binary is None:
        raise UserError("containerd is not installed: apt-get install -y containerd runc")
    b = Path(binary)
    pkg = binary_version(b)
    return ContainerdBuild("1.6", _upstream(pkg), pkg, b, b.parent, "system")


def user_build(path: str) -> ContainerdBuild:
    b = Path(path).resolve()
    if not b.is_file() or not os.access(b, os.X_OK):
        raise UserError(f"--containerd {path}: not an executable file")
    pkg = binary_version(b)
    shim_dir = b.parent
    if not (shim_dir / "containerd-shim-runc-v2").exists():
        shim = shutil.which("containerd-shim-runc-v2")
        if shim is None:
            raise UserError(f"no containerd-shim-runc-v2 next to {b} nor on PATH")
        shim_dir = Path(shim).parent
    return ContainerdBuild(str(b), _upstream(pkg), pkg, b, shim_dir, "user")


def debian_archive_uri() -> str:
    """The Debian archive URI the system's apt already uses (deb822 .sources or one-line .list)."""
    candidates: list[str] = []
    files = [APT_ETC / "sources.list", *sorted((APT_ETC / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file() or not (f.suffix in (".list", ".sources") or f.name == "sources.list"):
            continue
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
            elif line.startswith("deb "):
                parts = [p for p in re.sub(r"\[[^\]]*\]", "", line).split() if p]
                if len(parts) >= 2:
                    candidates.append(parts[1])
    for uri in candidates:
        u = uri.rstrip("/")
        if u.endswith("/debian") and "security" not in u:
            return u
    raise UserError("no Debian archive found in /etc/apt sources (needed to download newer containerd)")


class Fetcher:
    """Downloads and unpacks containerd from a Debian suite into the lab directory (cached)."""

    def __init__(self, lab_dir: Path, log: object = None):
        self.lab_dir = Path(lab_dir)
        self.log = log

    def _say(self, msg: str) -> None:
        if callable(self.log):
            self.log(msg)

    def _apt_opts(self, suite: str) -> list[str]:
        a = self.lab_dir / "apt" / suite
        return [
            "-o",
            f"Dir::Etc::SourceList={a}/etc/sources.list",
            "-o",
            f"Dir::Etc::SourceParts={a}/etc/sources.list.d",
            "-o",
            f"Dir::State={a}/state",
            "-o",
            f"Dir::State::status={a}/status",
            "-o",
            f"Dir::Cache={a}/cache",
            "-o",
            "APT::Sandbox::User=root",
            "-o",
            "Debug::NoLocking=1",
            "-q",
        ]

    def _apt(self, suite: str, args: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
        cmd = ["apt-get", *self._apt_opts(suite), *args]
        try:
            cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise UserError(f"apt-get {' '.join(args)} for {suite}: no answer within {timeout:g}s") from None
        if cp.returncode != 0:
            tail = (cp.stderr or cp.stdout).strip().splitlines()[-3:]
            raise UserError(f"apt-get {' '.join(args)} for {suite} failed: {' | '.join(tail)}")
        return cp.stdout

    def prepare(self, suite: str) -> None:
        a = self.lab_dir / "apt" / suite
        for d in ("etc/sources.list.d", "state/lists/partial", "cache/archives/partial"):
            (a / d).mkdir(parents=True, exist_ok=True)
        (a / "status").touch()
        signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
        (a / "etc" / "sources.list").write_text(f"deb {signed}{debian_archive_uri()} {suite} main\n")

    def fetch(self, key: str) -> ContainerdBuild:
        suite = SUITES[key]
        root = self.lab_dir / "containerd"
        # cached: any unpacked build of this suite
        for marker in sorted(root.glob(f"*/{suite}.ok")):
            build = self._build_at(marker.parent, key, suite)
            if build is not None:
                return build
        self._say(f"downloading containerd from Debian {suite} (apt-get download, private apt config)")
        self.prepare(suite)
        self._apt(suite, ["update"])
        debs = self.lab_dir / "debs" / suite
        debs.mkdir(parents=True, exist_ok=True)
        for old in debs.glob("*.deb"):
            old.unlink()
        self._apt(suite, ["download", "containerd"], cwd=debs)
        found = sorted(debs.glob("containerd_*.deb"))
        if not found:
            raise UserError(f"apt-get download containerd ({suite}) produced no .deb")
        deb = found[-1]
        pkg_version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        dest = root / pkg_version.replace("/", "_")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        cp = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, timeout=300)
        if cp.returncode != 0:
            raise UserError(f"dpkg-deb -x {deb.name} failed: {cp.stderr.strip()}")
        (dest / "package-version").write_text(pkg_version + "\n")
        build = self._build_at(dest, key, suite, check=True)
        if build is None:
            raise UserError(f"{deb.name} holds no usable usr/bin/containerd")
        (dest / f"{suite}.ok").write_text(build.version + "\n")
        return build

    def _build_at(self, dest: Path, key: str, suite: str, check: bool = False) -> ContainerdBuild | None:
        binary = dest / "usr" / "bin" / "containerd"
        shim = dest / "usr" / "bin" / "containerd-shim-runc-v2"
        if not binary.is_file() or not shim.is_file():
            return None
        try:
            pkg = (dest / "package-version").read_text().strip()
        except OSError:
            pkg = ""
        version = _upstream(binary_version(binary) if check or not pkg else pkg)
        return ContainerdBuild(key, version, pkg or version, binary, binary.parent, suite)


def resolve(key: str, lab_dir: Path, log: object = None) -> ContainerdBuild:
    """A containerd build by lab name (1.6, 1.7, 2.1, or an alias) or by path; downloads if needed."""
    key = ALIASES.get(key, key)
    if "/" in key:
        return user_build(key)
    if key not in SUITES:
        # a full version like 1.7.24 names the suite of its minor
        short = ".".join(key.split(".")[:2])
        if short not in SUITES:
            raise UserError(f"unknown containerd '{key}': use 1.6, 1.7, 2.1 or a path to a containerd binary")
        key = short
    if SUITES[key] == "system":
        return system_build()
    return Fetcher(lab_dir, log).fetch(key)
