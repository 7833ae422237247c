"""containerd `config.toml` (and `containerd config dump` output) -> RuntimeConfig.

Accepted variants (fixtures under tests/fixtures/node/config/):

- schema 1, no `version` field, short plugin IDs: `[plugins.cri]`, `[plugins.cri.containerd]`,
  `[plugins.overlayfs]`, `[plugins.bolt]` (config-v1-containerd-1.4.toml);
- schema 2 (`version = 2`, containerd 1.3+), URI plugin IDs: `[plugins."io.containerd.grpc.v1.cri"]`
  holds CRI image and runtime settings (config-v2-seed.toml: the seed article's file with its
  lost newlines restored; config-v2-volatile-1.7.toml);
- schema 3 (`version = 3`, containerd 2.0+): CRI split into `io.containerd.cri.v1.images` and
  `io.containerd.cri.v1.runtime` (config-v3-containerd-2.1.toml);
- schema 4 (`version = 4`, containerd 2.3+): `[grpc]`/`[ttrpc]`/`[metrics]` and the debug address
  move to `io.containerd.server.v1.*` plugins (config-v4-containerd-2.3.toml);
- `containerd config dump` output: the same TOML with every default filled in.

Parsed with the standard library's tomllib. The line of each relevant key is found by a
small scan of the text (tomllib gives no positions), so a report can quote it. Keys placed
where the file's schema does not read them (e.g. `[plugins.overlayfs]` in a version 2 file,
or CRI image settings under `io.containerd.grpc.v1.cri` in a version 3 file) are listed in
`misplaced`. Invalid TOML: `load_config`/`config_from_text` raise UserError with tomllib's
line and column; as an `analyze` input it is a warning on that input.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from plegdoctor.errors import UserError
from plegdoctor.knowledge import SCHEMAS, Schema
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Ref, quote
from plegdoctor.parsers.mounts import VOLATILE_SPELLINGS

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "containerd-config"

MAX_CONFIG_BYTES = 4 * 1024 * 1024
DEFAULT_ROOT = "/var/lib/containerd"
DEFAULT_STATE = "/run/containerd"


class RuntimeEntry(msgspec.Struct, frozen=True):
    name: str
    runtime_type: str | None
    systemd_cgroup: bool | None
    binary_name: str | None


class RuntimeConfig(msgspec.Struct, frozen=True):
    """What the audit needs from a containerd config. `None` = not set in the file (the
    containerd default applies). `refs` maps a dotted key (`plugins.<id>.mount_options`)
    to the line that sets it."""

    path: str
    schema: int
    schema_explicit: bool
    root: str
    state: str
    snapshotter: str | None
    overlay_mount_options: tuple[str, ...] | None
    overlay_root_path: str | None
    overlay_table_line: int | None
    bbolt_no_sync: bool | None
    max_concurrent_downloads: int | None
    transfer_max_concurrent_downloads: int | None
    image_pull_with_sync_fs: bool | None
    use_local_image_pull: bool | None
    debug_address: str | None
    debug_level: str | None
    debug_format: str | None
    default_runtime_name: str | None
    runtimes: tuple[RuntimeEntry, ...]
    plugins: tuple[str, ...]
    misplaced: tuple[str, ...]
    refs: dict[str, Ref] = msgspec.field(default_factory=dict)

    @property
    def schema_info(self) -> Schema:
        return SCHEMAS[self.schema]

    @property
    def systemd_cgroup(self) -> bool | None:
        name = self.default_runtime_name or "runc"
        for rt in self.runtimes:
            if rt.name == name:
                return rt.systemd_cgroup
        return None

    @property
    def volatile_configured(self) -> bool:
        return bool(self.overlay_mount_options) and any(
            o in VOLATILE_SPELLINGS for o in self.overlay_mount_options or ()
        )

    def ref(self, key: str) -> Ref | None:
        return self.refs.get(key)


# ----------------------------------------------------------------------------------------
# Line numbers of keys (tomllib does not report positions)

_TABLE = lazy_re(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = lazy_re(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_SEGMENT = lazy_re(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)""")


def _split_key(text: str) -> list[str]:
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            break
        parts.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return parts


def key_lines(text: str) -> dict[str, tuple[int, str]]:
    """Dotted key path -> (line number, line) for every table header and assignment.
    Multi-line arrays/strings are not entered (their first line is what we quote)."""
    out: dict[str, tuple[int, str]] = {}
    table: list[str] = []
    depth = 0  # inside a multi-line array
    in_multiline_string: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if in_multiline_string:
            if in_multiline_string in stripped:
                in_multiline_string = None
            continue
        if depth > 0:
            depth += stripped.count("[") - stripped.count("]")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        m = _TABLE.match(line)
        if m and not _ASSIGN.match(line):
            table = _split_key(m.group(1))
            out.setdefault(".".join(table), (lineno, line))
            continue
        m = _ASSIGN.match(line)
        if m:
            key = _split_key(m.group(1))
            out.setdefault(".".join(table + key), (lineno, line))
            rest = line[m.end() :]
            for marker in ('"""', "'''"):
                if rest.count(marker) == 1:
                    in_multiline_string = marker
            if rest.strip().startswith("["):
                depth = rest.count("[") - rest.count("]")
    return out


# ----------------------------------------------------------------------------------------


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _as_bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _as_str(v: Any) -> str | None:
    """A non-empty string (`config dump` writes unset strings as '')."""
    return v if isinstance(v, str) and v else None


MAX_KEY_PARTS = 100  # containerd's deepest key has ~10 parts; tomllib is quadratic in them (1000 took 29 ms)


def _check_key_parts(text: str, path: str) -> None:
    """UserError for a key of more than MAX_KEY_PARTS dotted parts: tomllib builds a dotted
    key by tuple concatenation, quadratic in its parts (a 64 KiB `a.a.a...` line takes
    seconds, a 4 MiB one hours). Counts the dots of a table header line, or of what is
    before the first `=` (dots in quoted parts count too: an upper bound)."""
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.lstrip()
        key = s if s.startswith("[") else s.partition("=")[0]
        if key.count(".") >= MAX_KEY_PARTS:
            raise UserError(f"{path}:{lineno}: a key of more than {MAX_KEY_PARTS} dotted parts: not read as TOML")


def config_from_text(text: str, path: str) -> RuntimeConfig:
    """Parse a config's text. Invalid TOML or an unknown schema version -> UserError."""
    import tomllib  # here: a node's 1-line log does not pay for the TOML parser

    _check_key_parts(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5000 digits, arrays nested 1000 deep
        raise UserError(f"{path}: not read as TOML: {str(exc)[:100]}") from None
    version = data.get("version")
    explicit = "version" in data
    if version is None:
        version = 1
    if not isinstance(version, int) or isinstance(version, bool) or version not in SCHEMAS:
        raise UserError(f"{path}: unknown containerd config schema version {version!r} (known: 1, 2, 3, 4)")
    schema = SCHEMAS[version]
    lines = key_lines(text)
    refs: dict[str, Ref] = {}

    def ref_for(*key: str) -> None:
        dotted = ".".join(key)
        if dotted in lines:
            lineno, line = lines[dotted]
            refs[dotted] = Ref(path, lineno, quote(line))

    plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
    assert isinstance(plugins, dict)

    def plugin(pid: str) -> dict[str, Any]:
        # v1 reads short IDs; a name with a dot passes through v1's migration unchanged
        value = plugins.get(pid)
        return value if isinstance(value, dict) else {}

    misplaced: list[str] = []
    overlay_id = schema.overlay
    overlay = plugin(overlay_id)
    if version == 1 and not overlay and plugin("io.containerd.snapshotter.v1.overlayfs"):
        overlay_id = "io.containerd.snapshotter.v1.overlayfs"
        overlay = plugin(overlay_id)
    if version >= 2 and "overlayfs" in plugins:
        misplaced.append(
            f"[plugins.overlayfs] is a version 1 name; a version {version} config reads "
            f'[plugins."{schema.overlay}"] (the table is ignored)'
        )
        ref_for("plugins", "overlayfs")
    if version >= 3:
        legacy_cri = plugin("io.containerd.grpc.v1.cri")
        for key in ("max_concurrent_downloads", "image_pull_with_sync_fs"):
            if key in legacy_cri:
                misplaced.append(
                    f'{key} under [plugins."io.containerd.grpc.v1.cri"] is the version 2 place; version {version} '
                    f"reads it from [plugins.'{schema.cri_images}']"
                )
                ref_for("plugins", "io.containerd.grpc.v1.cri", key)
        if isinstance(legacy_cri.get("containerd"), dict):
            misplaced.append(
                f'[plugins."io.containerd.grpc.v1.cri".containerd] is the version 2 place; version {version} '
                f"reads snapshotter from [plugins.'{schema.cri_images}'] and runtimes from "
                f"[plugins.'{schema.cri_runtime}'.containerd]"
            )
            ref_for("plugins", "io.containerd.grpc.v1.cri", "containerd")

    mount_options = overlay.get("mount_options")
    opts = tuple(str(o) for o in mount_options) if isinstance(mount_options, list) else None
    ref_for("plugins", overlay_id)
    ref_for("plugins", overlay_id, "mount_options")
    ref_for("plugins", overlay_id, "root_path")
    table_line = lines.get(f"plugins.{overlay_id}", (None, ""))[0]

    bolt_id = schema.bolt if plugin(schema.bolt) or version > 1 else "io.containerd.metadata.v1.bolt"
    bolt = plugin(bolt_id)
    ref_for("plugins", bolt_id, "no_sync")

    images = plugin(schema.cri_images)
    snap_table = _get(images, *schema.cri_images_prefix) if schema.cri_images_prefix else images
    snapshotter = _as_str(_get(snap_table, "snapshotter"))
    ref_for("plugins", schema.cri_images, *schema.cri_images_prefix, "snapshotter")
    ref_for("plugins", schema.cri_images, "max_concurrent_downloads")
    ref_for("plugins", schema.cri_images, "image_pull_with_sync_fs")
    ref_for("plugins", schema.cri_images, "use_local_image_pull")

    runtime_plugin = plugin(schema.cri_runtime)
    ctrd = _get(runtime_plugin, "containerd") or {}
    runtimes: list[RuntimeEntry] = []
    table = _get(ctrd, "runtimes")
    if isinstance(table, dict):
        for name, rt in table.items():
            if not isinstance(rt, dict):
                continue
            options = rt.get("options") if isinstance(rt.get("options"), dict) else {}
            assert isinstance(options, dict)
            runtimes.append(
                RuntimeEntry(
                    name=name,
                    runtime_type=_as_str(rt.get("runtime_type")),
                    systemd_cgroup=_as_bool(options.get("SystemdCgroup")),
                    binary_name=_as_str(options.get("BinaryName")),
                )
            )
            ref_for("plugins", schema.cri_runtime, "containerd", "runtimes", name, "options", "SystemdCgroup")
    ref_for("plugins", schema.cri_runtime, "containerd", "default_runtime_name")

    transfer = plugin(schema.transfer) if schema.transfer else {}
    if schema.transfer:
        ref_for("plugins", schema.transfer, "max_concurrent_downloads")

    debug = data.get("debug") if isinstance(data.get("debug"), dict) else {}
    assert isinstance(debug, dict)
    debug_address = _as_str(debug.get("address"))
    ref_for("debug", "address")
    if schema.debug_plugin and not debug_address:
        debug_address = _as_str(plugin(schema.debug_plugin).get("address"))
        ref_for("plugins", schema.debug_plugin, "address")
    ref_for("root")
    ref_for("state")
    ref_for("version")

    return RuntimeConfig(
        path=path,
        schema=version,
        schema_explicit=explicit,
        root=_as_str(data.get("root")) or DEFAULT_ROOT,
        state=_as_str(data.get("state")) or DEFAULT_STATE,
        snapshotter=snapshotter,
        overlay_mount_options=opts,
        overlay_root_path=_as_str(overlay.get("root_path")),
        overlay_table_line=table_line,
        bbolt_no_sync=_as_bool(bolt.get("no_sync")),
        max_concurrent_downloads=_as_int(images.get("max_concurrent_downloads")),
        transfer_max_concurrent_downloads=_as_int(transfer.get("max_concurrent_downloads")),
        image_pull_with_sync_fs=_as_bool(images.get("image_pull_with_sync_fs")),
        use_local_image_pull=_as_bool(images.get("use_local_image_pull")),
        debug_address=debug_address,
        debug_level=_as_str(debug.get("level")),
        debug_format=_as_str(debug.get("format")),
        default_runtime_name=_as_str(_get(ctrd, "default_runtime_name")),
        runtimes=tuple(runtimes),
        plugins=tuple(sorted(plugins)),
        misplaced=tuple(misplaced),
        refs=refs,
    )


def load_config(path: str) -> RuntimeConfig:
    """Read and parse a config file (used by `check --config`)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, not a containerd config")
    return config_from_text(raw.decode("utf-8", "replace"), path)


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: 0.6 and 0.95 need a table line holding `[plugins` or
    `[proxy_plugins`; 0.7 needs a line that is `version` after spaces and tabs, and one that
    is `root` or `state` after them (the `^` of re.M starts the text and follows each `\\n`,
    so the lines of the text split at `\\n` are the ones tried)."""
    text = "\n".join(lines[:400])
    if "[plugins" in text or "[proxy_plugins" in text:
        return False
    starts = [ln.lstrip(" \t") for ln in text.split("\n")]
    return not (any(s.startswith("version") for s in starts) and any(s.startswith(("root", "state")) for s in starts))


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    text = "\n".join(lines[:400])
    score = 0.0
    # `[ \t]*` (not `\s*`, which crosses newlines: from every line start over every blank
    # line after it, quadratic on a head of blank lines)
    if re.search(r"^[ \t]*+\[(?:plugins|proxy_plugins)[.\]]", text, re.M):
        score = 0.6
        if "io.containerd." in text or re.search(r"^[ \t]*+\[plugins\.(?:cri|overlayfs|bolt|linux)\b", text, re.M):
            score = 0.95
    elif re.search(r"^[ \t]*+version[ \t]*+=[ \t]*+\d++[ \t]*+$", text, re.M) and re.search(
        r"^[ \t]*+(?:root|state)[ \t]*+=", text, re.M
    ):
        score = 0.7
    return score


def parse(source: Source, ctx: ParseContext) -> None:
    stream = source.stream()
    raw = stream.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        ctx.report.warn(f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not read as a containerd config")
        return
    try:
        config = config_from_text(raw.decode("utf-8", "replace"), source.display)
    except UserError as exc:
        ctx.report.warn(str(exc))
        return
    ctx.evidence.runtime_configs.append(config)
    ctx.report.records += 1
    for note in config.misplaced:
        ctx.report.warn(note)
