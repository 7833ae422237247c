"""containerd's config as containerd reads it: its file (`--config`, else the default path) and the
files its `imports` name, read through /proc/<pid>/root so the paths are the runtime's own;
the debug and gRPC addresses it sets. `containerd config dump` is never run."""

from __future__ import annotations

import glob
import os
import re
import tomllib

from plegdoctor.live.procfs import ProcInfo

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_FILES = 32
DEFAULT_CONFIG = "/etc/containerd/config.toml"
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


def config_path_of(info: ProcInfo) -> str:
    args = list(info.cmdline)
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return DEFAULT_CONFIG


def _config_imports(text: str) -> list[str]:
    """The top-level `imports = [...]` of a containerd config (v2+); [] when there is none or it is not TOML."""
    try:
        value = tomllib.loads(text).get("imports")
    except tomllib.TOMLDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def containerd_configs(pid: int | None, main: str) -> list[tuple[str, str | None, str | None]]:
    """(path, text or None, error) of containerd's config file and of the files its `imports`
    name (globs, relative to the importing file, followed recursively), read through
    /proc/<pid>/root so the paths are the runtime's. At most MAX_CONFIG_FILES files of
    MAX_CONFIG_BYTES each; this is what `containerd config dump` would merge, without running it."""
    root = f"/proc/{pid}/root" if pid is not None and os.path.isdir(f"/proc/{pid}/root") else ""
    out: list[tuple[str, str | None, str | None]] = []
    queue, seen = [main], set()
    while queue and len(out) < MAX_CONFIG_FILES:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            with open(root + path, "rb") as fh:
                data = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            out.append((path, None, f"{path}: {exc.strerror or exc}"))
            continue
        if len(data) > MAX_CONFIG_BYTES:
            out.append((path, None, f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not read"))
            continue
        text = data.decode("utf-8", "replace")
        out.append((path, text, None))
        for pattern in _config_imports(text):
            pattern = pattern if pattern.startswith("/") else os.path.join(os.path.dirname(path), pattern)
            matches = sorted(glob.glob(root + pattern))[:MAX_CONFIG_FILES]
            queue.extend(m[len(root) :] for m in matches if os.path.isfile(m))
    if queue:
        out.append((queue[0], None, f"more than {MAX_CONFIG_FILES} config files: {len(queue)} imports not read"))
    return out


def debug_address_from_config(text: str) -> str:
    """`[debug] address = "..."` from a containerd config (v2/v3 top-level; v4 debug server plugin)."""
    section = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]").strip()
            continue
        m = re.match(r'address\s*=\s*"([^"]*)"', s)
        if m and (section == "debug" or section.endswith('io.containerd.server.v1.debug"')):
            return m[1]
    return ""


def grpc_address(info: ProcInfo, config_text: str) -> str | None:
    args = list(info.cmdline)
    for i, a in enumerate(args):
        if a in ("--address", "-a") and i + 1 < len(args):
            return args[i + 1]
    section = ""
    for line in config_text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]").strip()
        m = re.match(r'address\s*=\s*"([^"]+)"', s)
        if m and section == "grpc":
            return m[1]
    return DEFAULT_ADDRESS
