"""What collect did that another process could see (the manifest's `actions`), and step deadlines."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class StepTimeout(Exception):
    pass


def run_with_deadline(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """Run fn in a daemon thread; raise StepTimeout if it does not finish in time (the thread is abandoned)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # carried to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"collect-{what}", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise StepTimeout(f"{what}: no result within {seconds:g}s (deadline)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Actions:
    """Everything collect did that another process could see (manifest `actions`): each
    command run (argv, exit, seconds), signal sent (pid, signal, why) and socket call."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def command(self, argv: list[str], exit_code: int | None, seconds: float, **extra: Any) -> None:
        self.items.append(
            {"type": "command", "argv": list(argv), "exit": exit_code, "seconds": round(seconds, 3), **extra}
        )

    def signal(self, pid: int, sig: signal.Signals, why: str, error: str | None = None) -> None:
        item: dict[str, Any] = {"type": "signal", "pid": pid, "signal": sig.name, "why": why}
        if error:
            item["error"] = error
        self.items.append(item)

    def socket(self, endpoint: str, call: str, seconds: float, error: str | None = None, **extra: Any) -> None:
        item: dict[str, Any] = {"type": "socket", "endpoint": endpoint, "call": call, "seconds": round(seconds, 3)}
        if error:
            item["error"] = error
        self.items.append({**item, **extra})

    def summary(self) -> list[str]:
        """One line per kind, for the CLI: exactly what was run, signalled and called."""
        return summarize_actions(self.items)


def summarize_actions(items: list[dict[str, Any]]) -> list[str]:
    commands = [" ".join(a["argv"]) for a in items if a.get("type") == "command"]
    signals = [f"{a['signal']} to pid {a['pid']} ({a['why']})" for a in items if a.get("type") == "signal"]
    calls = [f"{a['call']} on {a['endpoint']}" for a in items if a.get("type") == "socket"]
    out = []
    out.append("ran " + ("; ".join(dict.fromkeys(commands)) if commands else "no command"))
    out.append("sent " + ("; ".join(signals) if signals else "no signal"))
    out.append("socket calls: " + ("; ".join(dict.fromkeys(calls)) if calls else "none"))
    return out
