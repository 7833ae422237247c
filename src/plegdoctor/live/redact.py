"""Redaction by structure: what a bundle member may not carry off the node.

`collect` runs as root on every node and bundles whatever the node has, so each text member
goes through a redactor chosen by what the member is (`redactor_for`):

- **argv** (`redact_argv`): element by element, before the command line is joined: the
  element after a secret-named flag (`--token X`, `--password X`, `--creds user:pw`,
  `--user user:pw`), `--token=X`, `KEY=VALUE` with a secret-named KEY, and whatever the line
  rules find in one element (a URL with userinfo, a known token prefix, an `Authorization:`
  or `Cookie:` header passed with `-H`). `--token-file /path` is a path, not a secret.
- **TOML** (`redact_toml`, containerd configs): line by line knowing the table each line is
  in, so every value of a secret-named key or table (`[...registry.configs."r".auth]`) goes,
  whatever its shape (string, `'''multi-line'''`, array over lines, inline table, number);
  `username` goes under registry configs. Every line is kept (report line numbers match) and
  the result is checked by structure: parsed again with tomllib (the runtime_config parser
  reads it), every secret leaf of the original must now hold the marker, else the member is
  refused (`ValueNotRedacted`).
- **JSON** (`redact_json`, CRI inspect/info): parsed, values of secret keys, `env`/`envs`
  arrays (`"KEY=VALUE"` strings, `{"key": K, "value": V}` objects) redacted; JSON Lines too.
- **env files** (`EnvRedactor`): `KEY=VALUE` with a secret KEY loses the whole value.
- **everything else** (`LineRedactor`, logs, ps tables, kubeconfig YAML): streaming, one line
  at a time with a little state: `key = value` / `"key": "value"` / `key: value` by key name
  (the key's last word: `db_password`, `identityToken`, `client-key-data`, not
  `password_file` or `tokenizer`), TOML multi-line strings and arrays, YAML block scalars,
  space-separated secret flags, URLs with userinfo, `Authorization`/`Cookie`/`Set-Cookie`
  headers, Go-printed CRI `&KeyValue{Key:..,Value:..}` env, JSON env arrays, PEM blocks
  across lines (and on one line with `\\n` escapes), and known token prefixes (GitHub, GitLab,
  Slack, AWS, JWTs, OpenAI, Stripe, Google, npm, PyPI, Docker Hub, Vault, DigitalOcean).
- **members kept raw** (goroutine dumps, sample series: `redact=False`): `MinimalRedactor`
  still removes known token prefixes and URL userinfo, the two shapes that can hide anywhere.
  A goroutine dump has no string values (arguments are words in hex), so nothing else fits.

Every redactor counts what it replaced (`count`); the bundle manifest records it per member.
Structured redactors read the whole member, up to `MAX_STRUCTURED` bytes; a larger one is
refused (`TooLargeToRedact`) rather than passed through a weaker redactor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from plegdoctor.live.redact_lines import (
    REDACTED,
    EnvRedactor,
    LineRedactor,
    MinimalRedactor,
    RedactionRefused,
    TooLargeToRedact,
    is_secret_key,
    redact_line,
)
from plegdoctor.live.redact_structured import ValueNotRedacted, redact_argv, redact_json, redact_toml

__all__ = [
    "MAX_STRUCTURED",
    "REDACTED",
    "DocumentRedactor",
    "EnvRedactor",
    "LineRedactor",
    "MinimalRedactor",
    "RedactedLines",
    "RedactionRefused",
    "Redactor",
    "TooLargeToRedact",
    "ValueNotRedacted",
    "is_secret_key",
    "redact_argv",
    "redact_json",
    "redact_line",
    "redact_toml",
    "redactor_for",
]

MAX_STRUCTURED = 16 << 20  # a TOML/JSON member larger than this is refused, not half-redacted


# -- choosing a redactor -----------------------------------------------------------------------
class Redactor(Protocol):
    count: int

    def lines(self, lines: Iterable[str]) -> Iterator[str]: ...


class DocumentRedactor:
    """A whole-document redactor (TOML, JSON): reads the member (at most MAX_STRUCTURED bytes)."""

    def __init__(self, kind: str, limit: int | None = None) -> None:
        self.kind = kind
        self.limit = MAX_STRUCTURED if limit is None else limit
        self.count = 0
        self.note: str | None = None

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        parts: list[str] = []
        size = 0
        for line in lines:
            size += len(line)
            if size > self.limit:
                raise TooLargeToRedact(
                    f"{self.kind} member larger than {self.limit} bytes: refused (too large to redact by structure)"
                )
            parts.append(line)
        text = "".join(parts)
        if self.kind == "toml":
            try:
                out, n = redact_toml(text)
            except RedactionRefused:
                raise
            except ValueError as exc:
                # invalid TOML (containerd would not start with it either): the line rules,
                # which know multi-line strings and arrays, and a note saying so
                self.note = f"{exc}; redacted line by line"
                r = LineRedactor()
                out, n = "".join(r.lines(text.splitlines(keepends=True))), r.count
        else:
            out, n = redact_json(text)
        self.count = n
        yield from out.splitlines(keepends=True)


_TOML_KINDS = {"containerd-config", "toml"}
_JSON_KINDS = {"json", "cri-json", "cri-inspect", "cri-info", "crictl-inspect"}
_ENV_KINDS = {"env", "environ"}


def redactor_for(kind: str | None, path: str = "", redact: bool = True) -> Redactor:
    """The redactor of a member, by its kind (a parser KIND) and then its file name."""
    if not redact:
        return MinimalRedactor()
    name = path.lower()
    if kind in _TOML_KINDS or (kind is None and name.endswith(".toml")):
        return DocumentRedactor("toml")
    if kind in _JSON_KINDS or (kind is None and name.endswith(".json")):
        return DocumentRedactor("json")
    if kind in _ENV_KINDS or (kind is None and (name.endswith(".env") or "/environ" in name)):
        return EnvRedactor()
    return LineRedactor()


class RedactedLines(list[str]):
    """Lines already redacted by their producer (argv in a ps table): carries the count."""

    def __init__(self, lines: Iterable[str] = (), redactions: int = 0) -> None:
        super().__init__(lines)
        self.redactions = redactions
