"""The config checks as a table, and the PD5xx rules reading its results: every check is
registered with what it reads and the statuses it can give, results stay within them, and
`analyze` (PD5xx) and `pleg-doctor check` say the same thing because both read one audit."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from plegdoctor.analysis import config_audit as ca
from plegdoctor.checkcmd import command, read_mounts
from plegdoctor.evidence import Evidence
from plegdoctor.model import Mount, Ref, Versions
from plegdoctor.parsers.runtime_config import config_from_text, load_config
from plegdoctor.rules import config as pd5
from plegdoctor.rules.registry import RuleContext
from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
CFG = TESTS / "fixtures" / "node" / "config"
MOUNTS = TESTS / "fixtures" / "node" / "mounts"
MOUNTS_MIXED = MOUNTS / "proc-mounts-overlay-volatile.txt"  # one containerd rootfs volatile, one not
MOUNTS_ALL_VOLATILE = TESTS / "fixtures" / "rules" / "proc-mounts-overlay-all-volatile.txt"
MOUNTS_PLAIN = TESTS / "incidents" / "01-overlay-umount-sync-hung-task" / "proc-mounts.txt"

PRINT_ORDER = [
    "versions",
    "config-schema",
    "config-misplaced-1",
    "volatile-containerd",
    "volatile-kernel",
    "volatile-configured",
    "volatile-in-effect",
    "volatile-temp-mounts",
    "fsync-volatile-spelling",
    "update-resources-status-lock",
    "content-commit-fsync",
    "bbolt-no-sync",
    "image-pull-parallelism",
    "containerd-root-disk",
    "debug-socket",
    "writeback-limits",
]


def test_every_check_is_registered_once_with_what_it_reads() -> None:
    ids = [spec.id for spec in ca.CHECKS]
    assert len(ids) == len(set(ids)) == 16
    for spec in ca.CHECKS:
        assert set(spec.reads) <= set(ca.base.INPUTS), spec.id
        assert spec.statuses and set(spec.statuses) <= set(ca.STATUS_ORDER), spec.id
        assert spec.about and spec.section in ca.SECTIONS, spec.id


def test_registering_a_duplicate_or_an_unknown_input_is_refused() -> None:
    with pytest.raises(ValueError, match="versions"):
        ca.check("versions", reads=(), statuses=(ca.INFO,), about="again")
    with pytest.raises(ValueError, match="disk"):
        ca.check("new-check", reads=("disk",), statuses=(ca.INFO,), about="reads an unknown input")


def test_results_keep_to_their_table_row_and_print_in_order() -> None:
    names = ("config-v2-seed.toml", "config-v3-misplaced-v2-keys.toml", "config-v2-volatile-1.7.toml")
    configs = [None, *(load_config(str(CFG / n)) for n in names)]
    tables = [None, read_mounts(str(MOUNTS_MIXED)), read_mounts(str(MOUNTS / "proc-mounts-fsync-volatile.txt"))]
    versions = [None, Versions(containerd="1.6.21", kernel="5.4.0-150-generic"), Versions(containerd="2.1.9")]
    sysctls = [None, {"dirty_ratio": 20, "mem_total_kb": 64 * 1024 * 1024}]
    spec_of = {spec.id: spec for spec in ca.CHECKS}
    seen = set()
    for config, mounts, v, s in itertools.product(configs, tables, versions, sysctls):
        result = ca.audit(config, v, mounts, s)
        for c in result:
            spec = spec_of.get(c.id) or spec_of[c.id.rsplit("-", 1)[0]]  # config-misplaced-N
            assert c.status in spec.statuses, (c.id, c.status)
            seen.add(c.id)
        order = [i for i in PRINT_ORDER if i in {c.id for c in result}]
        assert [c.id for c in result if not c.id.startswith("config-misplaced-") or c.id.endswith("-1")] == order
    assert {i for i in PRINT_ORDER} <= seen


def test_facts_say_whether_volatile_is_in_effect() -> None:
    def in_effect(path: Path | None) -> bool | None:
        return ca.facts_for(None, None, read_mounts(str(path)) if path else None).volatile_in_effect

    assert in_effect(MOUNTS_ALL_VOLATILE) is True
    assert in_effect(MOUNTS_MIXED) is False
    assert in_effect(MOUNTS_PLAIN) is False
    assert in_effect(None) is None


def _pd(code: str, ctx: RuleContext) -> list[str]:
    fn = {
        "PD501": pd5.overlay_not_volatile,
        "PD502": pd5.volatile_ignored_by_containerd,
        "PD503": pd5.volatile_kernel_too_old,
        "PD504": pd5.volatile_temp_mounts,
    }[code]
    return [h.title for h in fn(ctx)]


def test_rules_decide_on_the_audit_they_are_given() -> None:
    # the same evidence, two audits: the rules follow the audit, they derive nothing themselves
    cfg = load_config(str(CFG / "config-v2-volatile-1.7.toml"))
    ev = Evidence()
    ev.runtime_configs.append(cfg)
    ev.versions.append(Versions(containerd="1.7.24", kernel="5.4.0-150-generic"))
    assert _pd("PD503", RuleContext(ev)) == ["volatile configured on kernel 5.4.0 (needs >= 5.10)"]
    newer = ca.audit(cfg, Versions(containerd="1.7.24", kernel="5.15.0-91-generic"), [])
    assert _pd("PD503", RuleContext(ev, config_audit=newer)) == []
    assert _pd("PD503", RuleContext(ev, config_audit=None)) == []  # no audit (failed or absent): quiet


def _versions(tmp_path: Path, containerd: str, kernel: str = "5.15.0-91-generic") -> Path:
    p = tmp_path / "versions.txt"
    p.write_text(
        f"$ containerd --version\ncontainerd github.com/containerd/containerd v{containerd} abc\n"
        f"$ uname -r\n{kernel}\n",
        encoding="utf-8",
    )
    return p


def _check_status(*args: str) -> dict[str, str]:
    result = CliRunner().invoke(command, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    return {c["id"]: c["status"] for c in json.loads(result.output)["checks"]}


def test_pd504_and_check_agree_when_some_rootfs_mounts_are_volatile(tmp_path: Path) -> None:
    # no volatile in the config, but one running rootfs is mounted volatile on 1.6.24 (< 1.6.34):
    # its temporary mounts fail; `check` calls it a failure, so PD504 fires too
    status = _check_status("--containerd-version", "1.6.24", "--mounts", str(MOUNTS_MIXED))
    assert status["volatile-temp-mounts"] == "fail"
    hits = assert_fires("PD504", [MOUNTS_MIXED, _versions(tmp_path, "1.6.24")])
    assert "1.6.24" in hits[0].title and "1.6.34" in hits[0].title
    # look-alike: the same containerd with no volatile mount anywhere
    assert (
        _check_status("--containerd-version", "1.6.24", "--mounts", str(MOUNTS_PLAIN))["volatile-temp-mounts"] == "info"
    )
    assert_quiet("PD504", [MOUNTS_PLAIN, _versions(tmp_path, "1.6.24")])


CONFIG_NATIVE = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{snapshotter}"
"""


def test_pd501_quiet_when_cri_does_not_use_the_overlayfs_snapshotter(tmp_path: Path) -> None:
    # volatile is an overlayfs option: a `native` snapshotter config is not "missing" it
    for snapshotter, fires in (("overlayfs", True), ("native", False)):
        cfg = tmp_path / f"config-{snapshotter}.toml"
        cfg.write_text(CONFIG_NATIVE.format(snapshotter=snapshotter), encoding="utf-8")
        assert config_from_text(cfg.read_text(), str(cfg)).snapshotter == snapshotter
        status = _check_status("--config", str(cfg))["volatile-configured"]
        assert status == ("warn" if fires else "info")
        if fires:
            assert_fires("PD501", [cfg])
        else:
            assert_quiet("PD501", [cfg])


def test_containerd_overlay_mounts_are_told_from_other_overlays() -> None:
    def mount(target: str, upper: str) -> Mount:
        opts = ("rw", "lowerdir=/l", f"upperdir={upper}", "workdir=/w")
        return Mount("overlay", target, "overlay", opts, Ref("mounts", 1, target))

    task = mount("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs", "/var/lib/containerd/y")
    custom = mount("/mnt/c1", "/fast/ovl/snapshots/3/fs")  # a config's own overlay root_path
    docker = mount("/var/lib/docker/overlay2/4f/merged", "/var/lib/docker/overlay2/4f/diff")
    cfg = config_from_text(
        'version = 2\n[plugins."io.containerd.snapshotter.v1.overlayfs"]\n  root_path = "/fast/ovl"\n', "c.toml"
    )
    assert ca.containerd_overlay_mounts(cfg, [task, custom, docker]) == [task, custom]
    assert ca.containerd_overlay_mounts(None, [task, custom, docker]) == [task]
