"""Regular expressions compiled on first use.

`re.compile` is pure Python and costs ~0.1 ms a pattern: a parser module that compiles its
dozen patterns at import costs every run of `analyze` that time, although only the parsers
of the inputs at hand use theirs. `lazy_re` returns a stand-in that compiles on the first
call of a method and then binds the compiled pattern's methods into its own `__dict__`
(instance attributes win over the class's plain methods), so later calls cost what calls
of the compiled pattern cost. It has the methods and attributes of `re.Pattern` that the
modules use; `isinstance(x, re.Pattern)` is False, so it is not for patterns handed to `re`
functions. Hot-path modules (the log engine's) keep plain `re.compile`.
"""

from __future__ import annotations

import re
from typing import Any, AnyStr, cast

_METHODS = ("match", "search", "fullmatch", "finditer", "findall", "sub", "subn", "split")


class LazyPattern:
    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._args = (pattern, flags)

    def compiled(self) -> re.Pattern[Any]:
        """The compiled pattern (compiled now if not yet), its methods bound onto self."""
        p = self.__dict__.get("_compiled")
        if p is None:
            p = re.compile(*self._args)
            self.__dict__["_compiled"] = p
            for name in _METHODS:
                self.__dict__[name] = getattr(p, name)
        return cast("re.Pattern[Any]", p)

    # no __getattr__: defining one slows every attribute look-up of the class down
    @property
    def pattern(self) -> Any:
        return self._args[0]

    @property
    def flags(self) -> int:
        return self.compiled().flags

    @property
    def groups(self) -> int:
        return self.compiled().groups

    @property
    def groupindex(self) -> Any:
        return self.compiled().groupindex

    def __repr__(self) -> str:
        return f"lazy_re({self._args[0]!r})"


def _method(name: str) -> Any:
    def call(self: LazyPattern, *args: Any, **kw: Any) -> Any:
        return getattr(self.compiled(), name)(*args, **kw)

    call.__name__ = call.__qualname__ = name
    return call


for _name in _METHODS:  # the first call of each compiles; compiled() then shadows them all
    setattr(LazyPattern, _name, _method(_name))


def lazy_re(pattern: AnyStr, flags: int = 0) -> re.Pattern[AnyStr]:
    """`re.compile(pattern, flags)`, compiled when first used (see the module docstring)."""
    return cast("re.Pattern[AnyStr]", LazyPattern(pattern, flags))
