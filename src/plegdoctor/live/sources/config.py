"""containerd's config (`config/containerd.toml` and `config/imports/<i>-<name>`, read by
plegdoctor.parsers.runtime_config): the file containerd was started with and the files its
`imports` name, read through /proc/<pid>/root (plegdoctor.live.containerd_config; at most
MAX_CONFIG_FILES files of MAX_CONFIG_BYTES). `containerd config dump` is never run."""

from __future__ import annotations

import os
import re

from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.runtime import configs_of

MAIN_MEMBER = "config/containerd.toml"


def _safe_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path)) or "config"


def collect(run: CollectRun, src: NodeSource) -> None:
    for i, (path, text, error) in enumerate(configs_of(run)):
        member = MAIN_MEMBER if i == 0 else f"config/imports/{i:02d}-{_safe_name(path)}"
        if text is None:
            run.w.add_failed(member, src.kind, error or "unreadable", source=path)
            run.say(f"{member}: {error}")
        else:
            run.w.add_text(member, src.kind, text, source=path)
