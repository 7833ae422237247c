"""Fixtures that start real components (registry, containerd) for the integration tests; all stopped by PID.

Binaries missing -> the test is skipped with the reason, unless PLEG_DOCTOR_REQUIRE_INTEGRATION=1
(CI), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from plegdoctor.testbed.containerd import ContainerdProcess, ContainerdSpec
from plegdoctor.testbed.registry import RegistryProcess, find_busybox, push_busybox, push_pause

REQUIRE = os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1"


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `cond` every 0.2 s until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def require(*binaries: str) -> None:
    """Skip (or fail under PLEG_DOCTOR_REQUIRE_INTEGRATION=1) unless every binary is installed and we are root."""
    missing = [b for b in binaries if shutil.which(b) is None]
    reason = ""
    if missing:
        reason = f"missing {', '.join(missing)} (run .ci/install-deps.sh)"
    elif os.geteuid() != 0:
        reason = "needs root (mounts, cgroups, containerd)"
    elif "containerd" in binaries and find_busybox() is None:
        reason = "no static busybox (apt-get install busybox-static)"
    if reason:
        if REQUIRE:
            pytest.fail(f"{reason} and PLEG_DOCTOR_REQUIRE_INTEGRATION=1")
        pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryProcess]:
    require("docker-registry")
    reg = RegistryProcess.temporary()
    with reg:
        yield reg


@pytest.fixture(scope="session")
def images(registry: RegistryProcess) -> dict[str, str]:
    require("containerd", "runc")
    return {"pause": push_pause(registry.url), "busybox": push_busybox(registry.url)}


@pytest.fixture
def containerd_factory(registry: RegistryProcess, images: dict[str, str]) -> Iterator[Callable[..., ContainerdProcess]]:
    """Start a fresh containerd (own root, state, socket, TMPDIR); every one is stopped at teardown."""
    require("containerd", "runc", "containerd-shim-runc-v2")
    started: list[ContainerdProcess] = []

    def start(**kwargs: object) -> ContainerdProcess:
        spec = ContainerdSpec.temporary(sandbox_image=images["pause"], registry_hosts=[registry.host], **kwargs)
        ctd = ContainerdProcess(spec)
        started.append(ctd)
        ctd.start(timeout=30)
        return ctd

    try:
        yield start
    finally:
        for ctd in started:
            ctd.stop()


@pytest.fixture
def containerd(containerd_factory: Callable[..., ContainerdProcess]) -> ContainerdProcess:
    return containerd_factory()
