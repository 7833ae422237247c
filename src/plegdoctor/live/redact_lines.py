"""Line-by-line redaction rules (plegdoctor.live.redact): secret keys by name, known token
prefixes, URL userinfo, headers, PEM blocks, CRI env; `LineRedactor`, `MinimalRedactor`,
`EnvRedactor`. The module docstring of plegdoctor.live.redact says what each member kind gets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

try:  # one prefilter pass per line for every literal the rules start from
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised when the wheel is missing
    _hs = None  # type: ignore[assignment]

REDACTED = "<redacted>"


class RedactionRefused(ValueError):
    """The member cannot be redacted safely: the bundle records this error instead of its text."""


class TooLargeToRedact(RedactionRefused):
    pass


# -- which keys name a secret ---------------------------------------------------------------
# The key's last word decides (db_password, identityToken, X-Auth-Token), so password_file,
# token-ttl, auth_type or tokenizer are not secrets.
_EXACT = {
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "credential",
    "cred",
    "auth",
    "authorization",
    "cookie",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "identitytoken",
    "sessionid",
}
_SUFFIXES = ("password", "passwd", "secret", "token")  # identitytoken, registrytoken, dbpassword
_KEY_QUALIFIERS = {"api", "private", "secret", "access", "encryption", "signing", "ssh", "client", "master", "session"}
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_PLAIN = {"true", "false", "null", "none", "nil", "yes", "no", ""}


def is_secret_key(key: str) -> bool:
    """Whether a key, flag or variable name names a secret (by its last word)."""
    raw = key.strip().strip("\"'").lstrip("-")
    if raw.lower().endswith("-data") and len(raw) > 5:  # kubeconfig client-key-data, *-data
        return True
    words = [w.lower() for w in _WORDS.findall(raw)]
    if not words:
        return False
    last = words[-1]
    for w in (last, last[:-1] if last.endswith("s") and len(last) > 4 else last):
        if w in _EXACT or w.endswith(_SUFFIXES):
            return True
    return last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS


# -- shapes that are secret wherever they appear ----------------------------------------------
_TOKENS = re.compile(
    r"\b(?:"
    r"gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_-]{16,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}"
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|pypi-[A-Za-z0-9_-]{40,}"
    r"|dckr_pat_[A-Za-z0-9_-]{20,}"
    r"|hv[sbr]\.[A-Za-z0-9_-]{20,}"
    r"|do[pro]_v1_[a-f0-9]{64}"
    r")"
)
# Every token shape above starts with (or, for JWTs, contains) one of these literals: a line
# holding none is skipped with substring tests, which are ~20x faster than the alternation.
_TOKEN_LITERALS = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xox",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "eyJ",
    "sk-",
    "k_live_",
    "k_test_",
    "AIza",
    "npm_",
    "pypi-",
    "dckr_pat_",
    "hvs.",
    "hvb.",
    "hvr.",
    "_v1_",
)
# scheme://user:password@ (password redacted) and scheme://token@ (the whole userinfo)
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]{0,30}://)([^/\s:@\"'<>]{1,512})(?::([^@\s/\"'<>]{0,4096}))?@")


def _url(m: re.Match[str], counter: list[int]) -> str:
    user, password = m.group(2), m.group(3)
    if password is not None:
        if password in ("", REDACTED):
            return m.group(0)
        counter[0] += 1
        return f"{m.group(1)}{user}:{REDACTED}@"
    if user == REDACTED:
        return m.group(0)
    counter[0] += 1
    return f"{m.group(1)}{REDACTED}@"


def _minimal(line: str, counter: list[int]) -> str:
    if "://" in line and "@" in line:
        line = _URL_USERINFO.sub(lambda m: _url(m, counter), line)

    def tok(m: re.Match[str]) -> str:
        counter[0] += 1
        return REDACTED

    if not any(lit in line for lit in _TOKEN_LITERALS):
        return line
    return _TOKENS.sub(tok, line)


# -- the line rules --------------------------------------------------------------------------
_KEYCHARS = r"[A-Za-z0-9_.-]"
_HINT = r"(?i:pass|pwd|secret|token|key|cred|auth|cookie|-data|sessionid)"
_KV = re.compile(
    r"(?P<k>(?P<q>[\"']?)(?<![A-Za-z0-9_.-])(?P<name>" + _KEYCHARS + r"+)(?P=q)[ \t]*[=:][ \t]*)"
    r"(?:(?P<ml>'''|\"\"\")(?P<mlv>.*?)(?P<mlc>(?P=ml)|$)"
    r"|(?P<arr>\[)(?P<arrv>[^\]]*)(?P<arrc>\]|$)"
    r"|\"(?P<dq>(?:[^\"\\]|\\.)*)\"|'(?P<sq>[^']*)'|(?P<u>[^\s\"',;{}\[\]]+))"
)
# --token X (argv joined into one string by ps, a shell history, a log of an exec)
_FLAG_SPACE = re.compile(r"(?<![\w-])(?P<f>--?[A-Za-z0-9]" + _KEYCHARS + r"*)(?P<s>[ \t]+)(?P<v>[^\s-]\S*)")
# a line without any of these has no key or flag to look at; tested as substrings of the
# lower-cased line (a case-insensitive alternation costs ~7x more per line)
_HINT_WORDS = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "cookie", "-data", "sessionid")


class _Gate:
    """Which lines can hold a secret at all: one Hyperscan pass for every literal a rule needs.

    Most log lines hold none of them; for those the regexes never run. Hyperscan takes ~4 us a
    line here, the same tests as Python substring checks ~25 us (bench/bench_redact.py).
    """

    def __init__(self, literals: tuple[str, ...], caseless: tuple[str, ...]) -> None:
        self.literals, self.caseless = literals, tuple(w.lower() for w in caseless)
        self._db: Any = None
        if _hs is not None:
            exprs = [re.escape(x).encode() for x in literals + caseless]
            flags = [_hs.HS_FLAG_SINGLEMATCH] * len(literals) + [_hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_CASELESS] * len(
                caseless
            )
            db = _hs.Database()
            db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
            self._db, self._scratch = db, _hs.Scratch(db)
            self._url = literals.index("://") if "://" in literals else -1

    def __call__(self, line: str) -> bool:
        if self._db is None:
            lower = line.lower()
            return (
                any(x in line for x in self.literals if x != "://")
                or any(w in lower for w in self.caseless)
                or ("://" in line and "@" in line)
            )
        hit = [False]
        url = self._url

        def on_match(i: int, _f: int, _t: int, _fl: int, _ctx: object) -> bool | None:
            if i != url or "@" in line:
                hit[0] = True
                return True  # stop the scan
            return None

        try:
            self._db.scan(line.encode("utf-8", "surrogateescape"), match_event_handler=on_match, scratch=self._scratch)
        except _hs.ScanTerminated:
            pass
        except _hs.error:
            return True  # never skip a line because the prefilter failed
        return hit[0]


# what the minimal redactor looks for; and every word any line rule starts from
_MINIMAL_GATE = _Gate(("://", *_TOKEN_LITERALS), ())
_LINE_GATE = _Gate(
    ("://", *_TOKEN_LITERALS),
    ("-----BEGIN ", "keyvalue{", '"env', "authorization", "bearer", "basic", "cookie", *_HINT_WORDS),
)
_AUTH_HEADER = re.compile(
    r"(?i)(?P<h>\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?:(?P<scheme>bearer|basic|token|digest|negotiate|aws4-hmac-sha256)[ \t]+)?(?P<v>[^\s\"',;]+)"
)
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)[ \t]+(?P<v>[A-Za-z0-9._~+/=-]{8,})")
_COOKIE = re.compile(r"(?i)(?P<h>(?<![\w-])(?:set-)?cookie[\"']?[ \t]*:[ \t]*[\"']?)(?P<v>[^\"\r\n]+)")
_CRI_ENV = re.compile(r"(&KeyValue\{Key:[^,}]*,Value:)([^}]*?)(,?\})")
_JSON_ENV = re.compile(r"(\"(?i:env|envs)\"\s*:\s*\[)([^\]]*)(\])")
_ENV_ITEM = re.compile(r"\"([^\"=]+)=((?:[^\"\\]|\\.)*)\"")
# private keys (RSA, EC, OPENSSH, PKCS#8, ENCRYPTED, PGP PRIVATE KEY BLOCK); certificates are public
_PEM_LABEL = r"[A-Z0-9 ]*(?:PRIVATE|SECRET|ENCRYPTED)[A-Z0-9 ]*"
_PEM_BEGIN = re.compile(r"-----BEGIN (" + _PEM_LABEL + r")-----")
_PEM_ONE_LINE = re.compile(r"(-----BEGIN (" + _PEM_LABEL + r")-----)(.*?)(-----END \2-----)")
# base64 runs of a PEM body (not the marker's own letters, not short words of a log prefix)
_B64_RUN = re.compile(r"(?<![<\w+/])(?:[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9+/]{2,15}={1,2})")
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")
_YAML_BLOCK = re.compile(r"[|>][-+0-9]*")


_POINTER = re.compile(r"0x[0-9a-fA-F]{1,16}")  # Go prints a pointer field (Auth:0xc000123456), not its value
_SCHEMES = {"bearer", "basic", "token", "digest", "negotiate"}


def _skip(value: str) -> bool:
    """Values that are no secret: already redacted, booleans and nulls, Go pointers."""
    return value.startswith(REDACTED) or value.lower() in _PLAIN or _POINTER.fullmatch(value) is not None


class LineRedactor:
    """Streaming redactor of text, one line at a time (with the state of open PEM blocks,
    multi-line TOML strings and arrays, and YAML block scalars)."""

    def __init__(self) -> None:
        self.count = 0
        self._until: str | None = None  # closer of an open multi-line secret (''' """ ])
        self._yaml_indent: int | None = None  # indentation of a secret key whose block scalar is open
        self._pem = False
        self._counted = True  # the open multi-line value was counted (counted on its first redacted text)

    # one counter list shared with the module-level helpers
    def _bump(self, n: int = 1) -> None:
        self.count += n

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            yield self.redact(line)

    def redact(self, line: str) -> str:
        body, nl = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        return self._redact(body) + nl

    def _open(self) -> None:
        self._counted = False

    def _hidden(self, text: str, replacement: str) -> str:
        """`text` of an open multi-line secret replaced; the value is counted once."""
        if replacement != text and not self._counted:
            self._counted = True
            self.count += 1
        return replacement

    def _redact(self, line: str) -> str:
        # open multi-line values first
        if self._yaml_indent is not None:
            indent = len(line) - len(line.lstrip(" "))
            if not line.strip():
                return line
            if indent > self._yaml_indent:
                return self._hidden(line, line[:indent] + REDACTED)
            self._yaml_indent = None
        if self._until is not None:
            i = line.find(self._until)
            head, rest = (line, "") if i < 0 else (line[:i], line[i:])
            if i >= 0:
                self._until = None
            hidden = REDACTED if head.strip() else head
            line = self._hidden(head, hidden) + rest
            if i < 0:
                return line
        if self._pem:
            head, sep, tail = line.partition("-----END ")
            if sep:
                self._pem = False
            return self._hidden(head, _B64_RUN.sub(REDACTED, head)) + sep + tail
        return self._rules(line)

    def _rules(self, line: str) -> str:
        if not _LINE_GATE(line):
            return line
        counter = [0]
        if "-----BEGIN " in line:
            line = self._pem_rules(line, counter)
        lower = line.lower()
        if "keyvalue{" in lower:
            line = _CRI_ENV.sub(lambda m: self._env_sub(m, counter), line)
        if '"env' in lower:
            line = _JSON_ENV.sub(lambda m: self._json_env(m, counter), line)
        if "authorization" in lower:
            line = _AUTH_HEADER.sub(lambda m: self._header(m, counter), line)
        if "bearer" in lower or "basic" in lower:
            line = _BEARER.sub(lambda m: self._bearer(m, counter), line)
        if "cookie" in lower:
            line = _COOKIE.sub(lambda m: self._cookie(m, counter), line)
        line = _minimal(line, counter)
        if any(w in lower for w in _HINT_WORDS):
            line = _FLAG_SPACE.sub(lambda m: self._flag(m, counter), line)
            line = self._kv_scan(line, counter)
        self.count += counter[0]
        return line

    def _pem_rules(self, line: str, counter: list[int]) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(3).strip(" \\n") in ("", REDACTED):
                return m.group(0)
            counter[0] += 1
            return f"{m.group(1)}{REDACTED}{m.group(4)}"

        line = _PEM_ONE_LINE.sub(one, line)
        begins = list(_PEM_BEGIN.finditer(line))
        m = begins[-1] if begins else None
        if m is not None and f"-----END {m.group(1)}-----" not in line[m.end() :]:
            self._pem = True
            self._open()
            rest = line[m.end() :]
            return line[: m.end()] + self._hidden(rest, _B64_RUN.sub(REDACTED, rest))
        return line

    @staticmethod
    def _env_sub(m: re.Match[str], counter: list[int]) -> str:
        if _skip(m.group(2)):
            return m.group(0)
        counter[0] += 1
        return f"{m.group(1)}{REDACTED}{m.group(3)}"

    @staticmethod
    def _json_env(m: re.Match[str], counter: list[int]) -> str:
        def item(e: re.Match[str]) -> str:
            if e.group(2) == REDACTED:
                return e.group(0)
            counter[0] += 1
            return f'"{e.group(1)}={REDACTED}"'

        return m.group(1) + _ENV_ITEM.sub(item, m.group(2)) + m.group(3)

    @staticmethod
    def _header(m: re.Match[str], counter: list[int]) -> str:
        if _skip(m.group("v")):
            return m.group(0)
        counter[0] += 1
        scheme = f"{m.group('scheme')} " if m.group("scheme") else ""
        return f"{m.group('h')}{scheme}{REDACTED}"

    @staticmethod
    def _bearer(m: re.Match[str], counter: list[int]) -> str:
        if _skip(m.group("v")):
            return m.group(0)
        counter[0] += 1
        return f"{m.group('scheme')} {REDACTED}"

    @staticmethod
    def _cookie(m: re.Match[str], counter: list[int]) -> str:
        if _skip(m.group("v").strip()):
            return m.group(0)
        counter[0] += 1
        return f"{m.group('h')}{REDACTED}"

    @staticmethod
    def _flag(m: re.Match[str], counter: list[int]) -> str:
        if not is_secret_key(m.group("f")) or _skip(m.group("v").strip("\"'")):
            return m.group(0)
        counter[0] += 1
        return f"{m.group('f')}{m.group('s')}{REDACTED}"

    def _kv_scan(self, line: str, counter: list[int]) -> str:
        """Each `key = value` by key name; after a key that is no secret, the scan goes on from
        its value (`exec: DB_PASSWORD=x` holds a secret key inside the value of `exec`)."""
        out: list[str] = []
        pos = last = 0
        while (m := _KV.search(line, pos)) is not None:
            if not is_secret_key(m.group("name")):
                pos = m.end("k")
                continue
            out += [line[last : m.start()], self._kv(m, counter, line)]
            pos = last = m.end()
        return "".join(out) + line[last:] if out else line

    def _kv(self, m: re.Match[str], counter: list[int], line: str) -> str:
        k = m.group("k")
        if m.group("ml") is not None:
            value = m.group("mlv")
            if not m.group("mlc"):
                self._until = m.group("ml")
                self._open()
                return f"{k}{m.group('ml')}{self._hidden(value, REDACTED if value.strip() else value)}"
            if value.startswith(REDACTED):
                return m.group(0)
            counter[0] += 1
            return f"{k}{m.group('ml')}{REDACTED}{m.group('mlc')}"
        if m.group("arr") is not None:
            inner = m.group("arrv")
            n = [0]

            def q(e: re.Match[str]) -> str:
                s = e.group(0)
                if s[1:-1].startswith(REDACTED):
                    return s
                n[0] += 1
                return f"{s[0]}{REDACTED}{s[0]}"

            inner = _QUOTED.sub(q, inner)
            if not m.group("arrc"):
                self._until = "]"
                self._open()
                self._counted = n[0] > 0
            counter[0] += n[0]
            return f"{k}[{inner}{m.group('arrc')}"
        for group, quote in (("dq", '"'), ("sq", "'"), ("u", "")):
            value = m.group(group)
            if value is None:
                continue
            if _skip(value) or value.lower() in _SCHEMES:
                return m.group(0)
            if group == "u" and _YAML_BLOCK.fullmatch(value) and m.end() == len(line.rstrip()):
                self._yaml_indent = len(line) - len(line.lstrip(" "))
                self._open()
                return m.group(0)
            counter[0] += 1
            return f"{k}{quote}{REDACTED}{quote}"
        return m.group(0)


def redact_line(line: str) -> tuple[str, int]:
    """Redact one line on its own (no state carried to a next line); (line, redactions)."""
    r = LineRedactor()
    out = r.redact(line)
    return out, r.count


class MinimalRedactor:
    """For members kept raw (goroutine dumps, sample series): known token prefixes and URL userinfo."""

    def __init__(self) -> None:
        self.count = 0

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        counter = [0]
        for line in lines:
            yield _minimal(line, counter) if _MINIMAL_GATE(line) else line
            self.count = counter[0]


class EnvRedactor(LineRedactor):
    """`KEY=VALUE` files (env files, /etc/default/*): a secret KEY loses its whole value."""

    _LINE = re.compile(r"^(\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)=)(.*)$")

    def _rules(self, line: str) -> str:
        m = self._LINE.match(line)
        if m and is_secret_key(m.group(2)) and not _skip(m.group(3).strip("\"'")):
            self.count += 1
            return m.group(1) + REDACTED
        return super()._rules(line)
