"""Redaction by structure of argv, TOML and JSON (plegdoctor.live.redact): `redact_argv`,
`redact_toml` (checked by parsing the result again), `redact_json` (JSON Lines too)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Sequence
from typing import Any

from plegdoctor.live.redact_lines import _QUOTED, REDACTED, LineRedactor, RedactionRefused, _skip, is_secret_key

# -- argv --------------------------------------------------------------------------------------
_USER_FLAGS = {"-u", "--user", "--proxy-user"}  # curl user:password


def redact_argv(argv: Sequence[str]) -> tuple[list[str], int]:
    """Redact a command line element by element; (argv, redactions)."""
    out: list[str] = []
    count = 0
    pending = False  # the previous element is a secret-named flag (or -u with user:pw next)
    user_flag = False
    for arg in argv:
        if pending:
            pending = False
            if not _skip(arg):
                out.append(REDACTED)
                count += 1
                continue
        if user_flag:
            user_flag = False
            if ":" in arg and "://" not in arg:
                user, _, _ = arg.partition(":")
                out.append(f"{user}:{REDACTED}")
                count += 1
                continue
        if arg.startswith("-") and not arg.startswith("---"):
            name, eq, value = arg.partition("=")
            if is_secret_key(name):
                if eq:
                    if _skip(value):
                        out.append(arg)
                    else:
                        out.append(f"{name}={REDACTED}")
                        count += 1
                    continue
                pending = True
                out.append(arg)
                continue
            if name in _USER_FLAGS and not eq:
                user_flag = True
                out.append(arg)
                continue
        else:
            key, eq, value = arg.partition("=")
            if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key) and is_secret_key(key):
                if _skip(value):
                    out.append(arg)
                else:
                    out.append(f"{key}={REDACTED}")
                    count += 1
                continue
        r = LineRedactor()
        red = "\n".join(r.redact(part) for part in arg.split("\n"))
        out.append(red)
        count += r.count
    return out, count


# -- TOML --------------------------------------------------------------------------------------
_TOML_HEADER = re.compile(r"^\s*\[\[?\s*(?P<path>(?:[^\]\"'#]|\"(?:[^\"\\]|\\.)*\"|'[^']*')+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(
    r"^(?P<prefix>\s*(?P<key>(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
    r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'))*)\s*=\s*)(?P<value>.*)$"
)
_TOML_PART = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([A-Za-z0-9_-]+)")
_REGISTRY_USER = {"username", "user"}


class ValueNotRedacted(RedactionRefused):
    """A structured check found a secret value the redactor left in place (the member is refused)."""


def _toml_parts(dotted: str) -> list[str]:
    return [m.group(1) or m.group(2) or m.group(3) or "" for m in _TOML_PART.finditer(dotted)]


def _toml_secret_path(path: Sequence[str]) -> bool:
    """A value at this key path is secret: a secret-named key or table on the path, or a
    username under a registry config."""
    if any(is_secret_key(p) for p in path):
        return True
    return bool(path) and path[-1].lower() in _REGISTRY_USER and any("registry" in p.lower() for p in path[:-1])


class TomlRedactor(LineRedactor):
    """TOML line by line, knowing the table each line is in (`[...registry.configs."r".auth]`):
    every value of a secret-named key or table is redacted whatever its shape (string,
    '''multi-line''', array over lines, inline table, number), and then the line rules."""

    def __init__(self) -> None:
        super().__init__()
        self._table: list[str] = []

    def _rules(self, line: str) -> str:
        h = _TOML_HEADER.match(line)
        if h:
            self._table = _toml_parts(h.group("path"))
            return line
        m = _TOML_KEY.match(line)
        if m and _toml_secret_path([*self._table, *_toml_parts(m.group("key"))]):
            return m.group("prefix") + self._force(m.group("value"))
        return super()._rules(line)

    def _force(self, value: str) -> str:
        v = value.lstrip()
        lead = value[: len(value) - len(v)]
        for ml in ("'''", '"""'):
            if v.startswith(ml):
                end = v.find(ml, 3)
                if end >= 0:
                    if v[3:end].startswith(REDACTED):
                        return value
                    self.count += 1
                    return f"{lead}{ml}{REDACTED}{v[end:]}"
                self._until = ml
                self._open()
                return lead + ml + self._hidden(v[3:], REDACTED if v[3:].strip() else v[3:])
        if v.startswith(("[", "{")):
            n = [0]
            out = _QUOTED.sub(lambda q: self._quoted(q, n), v)
            self.count += n[0]
            if v.startswith("[") and "]" not in _QUOTED.sub("", v):
                self._until = "]"
                self._open()
                self._counted = True
            return lead + out
        if v[:1] in ("'", '"'):
            q = _QUOTED.match(v)
            if q:
                n = [0]
                out = self._quoted(q, n)
                self.count += n[0]
                return lead + out + v[q.end() :]
            return value
        word, _, rest = v.partition(" ")
        if _skip(word):
            return value
        self.count += 1
        return f'{lead}"{REDACTED}"' + (f" {rest}" if rest else "")

    @staticmethod
    def _quoted(q: re.Match[str], n: list[int]) -> str:
        s = q.group(0)
        if s[1:-1].startswith(REDACTED) or len(s) == 2:
            return s
        n[0] += 1
        return f"{s[0]}{REDACTED}{s[0]}"

    def _redact(self, line: str) -> str:
        if self._until == "]" and ('"' in line or "'" in line):
            # an array over lines: its strings, so the document stays TOML
            head, sep, tail = line.partition("]")
            n = [0]
            head = _QUOTED.sub(lambda q: self._quoted(q, n), head)
            self.count += n[0]
            if sep:
                self._until = None
            return head + sep + tail
        return super()._redact(line)


def _toml_leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _toml_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _toml_leaves(v, (*path, str(i)))
    else:
        yield path, value


def redact_toml(text: str) -> tuple[str, int]:
    """Redact a TOML document by key, keeping every line; ValueError when it is not TOML,
    ValueNotRedacted when the check of the result finds a secret value left."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    r = TomlRedactor()
    out = "".join(r.lines(text.splitlines(keepends=True)))
    # the check by structure: every secret leaf of the document is gone from the output
    try:
        after = dict(_toml_leaves(tomllib.loads(out), ()))
    except tomllib.TOMLDecodeError as exc:
        raise ValueNotRedacted(f"redacted TOML no longer parses ({exc})") from None
    for path, value in _toml_leaves(before, ()):
        if not _toml_secret_path([p for p in path if not p.isdigit()]) or isinstance(value, bool):
            continue
        got = after.get(path)
        if not (isinstance(got, str) and got.startswith(REDACTED)) and str(value) not in ("", REDACTED):
            raise ValueNotRedacted(f"value of {'.'.join(path)} not redacted")
    return out, r.count


def _text_value(value: str) -> tuple[str, int]:
    """Line rules applied to a string value of a non-secret key (URLs, tokens, PEM inside)."""
    r = LineRedactor()
    out = "".join(r.lines(value.splitlines(keepends=True)))
    return out, r.count


# -- JSON --------------------------------------------------------------------------------------
_ENV_KEYS = {"env", "envs", "environment"}
_ARGV_KEYS = {"args", "argv", "command", "cmd", "cmdline", "entrypoint"}


class _JsonWalk:
    def __init__(self) -> None:
        self.count = 0

    def secret(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.secret(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.secret(v) for v in value]
        if isinstance(value, bool) or value is None or value == REDACTED or value == "":
            return value
        self.count += 1
        return REDACTED

    def env_item(self, item: Any) -> Any:
        if isinstance(item, str):
            key, eq, value = item.partition("=")
            if eq and value != REDACTED:
                self.count += 1
                return f"{key}={REDACTED}"
            return item
        if isinstance(item, dict):
            return {k: (self.secret(v) if k.lower() == "value" else self.walk(v)) for k, v in item.items()}
        return self.walk(item)

    def walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            named = next((value[k] for k in ("key", "name", "Key", "Name") if isinstance(value.get(k), str)), None)
            for k, v in value.items():
                if is_secret_key(k):
                    out[k] = self.secret(v)
                elif k.lower() in _ENV_KEYS and isinstance(v, list):
                    out[k] = [self.env_item(i) for i in v]
                elif k.lower() in _ENV_KEYS and isinstance(v, dict):
                    out[k] = {ek: self.secret(ev) for ek, ev in v.items()}
                elif k.lower() == "value" and named is not None and is_secret_key(named):
                    out[k] = self.secret(v)
                elif k.lower() in _ARGV_KEYS and isinstance(v, list) and all(isinstance(i, str) for i in v):
                    out[k], n = redact_argv(v)
                    self.count += n
                else:
                    out[k] = self.walk(v)
            return out
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, str):
            red, n = _text_value(value)
            self.count += n
            return red
        return value


def redact_json(text: str) -> tuple[str, int]:
    """Redact a JSON document (or JSON Lines) by key; lines that are not JSON get the line rules."""
    walk = _JsonWalk()
    try:
        doc = json.loads(text)
    except ValueError:
        out: list[str] = []
        lines = LineRedactor()
        for line in text.splitlines(keepends=True):
            try:
                item = json.loads(line)
            except ValueError:
                out.append(lines.redact(line))
                continue
            out.append(json.dumps(walk.walk(item), ensure_ascii=False) + ("\n" if line.endswith("\n") else ""))
        return "".join(out), walk.count + lines.count
    return json.dumps(walk.walk(doc), indent=2, ensure_ascii=False) + "\n", walk.count
