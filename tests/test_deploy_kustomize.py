"""deploy/kustomization.yaml: every resource it lists exists and is valid, no object is defined
twice (kustomize refuses that), the DaemonSet's image is the one `images:` pins by digest, and
what kustomize renders (when `kustomize` or `kubectl` is installed) is the same set of objects
with the image replaced by name@digest. Without either tool the kustomization is checked
structurally only: the images transform is applied here, by the rule kustomize documents
(an image whose name matches gets `@digest` in place of its tag)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
IMAGE = "ghcr.io/pleg-doctor/pleg-doctor"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# kinds the Kubernetes schemas know; PodMonitor and PrometheusRule are the Prometheus Operator's CRDs
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1")


def _kustomization() -> dict[str, Any]:
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    return k


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _key(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    group = doc["apiVersion"].rpartition("/")[0]
    meta = doc["metadata"]
    return (group, doc["kind"], meta.get("namespace", ""), meta["name"])


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] != "DaemonSet":
        return []
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _split_image(ref: str) -> str:
    """The name part of an image reference (no tag, no digest)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _render_here(k: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources with kustomize's images transform applied (name -> name@digest)."""
    pins = {i["name"]: i for i in k.get("images", [])}
    out = []
    for res in k["resources"]:
        for doc in _docs(res):
            for c in _containers(doc):
                pin = pins.get(_split_image(c["image"]))
                if pin is not None:
                    c["image"] = f"{pin.get('newName', pin['name'])}@{pin['digest']}"
            out.append(doc)
    return out


def test_every_resource_exists_and_no_object_is_defined_twice() -> None:
    k = _kustomization()
    assert set(k["resources"]) >= {"daemonset.yaml", "rbac.yaml", "podmonitor.yaml", "prometheusrule.yaml"}
    missing = [r for r in k["resources"] if not (DEPLOY / r).is_file()]
    assert not missing, f"listed in deploy/kustomization.yaml but absent: {missing}"
    seen: dict[tuple[str, str, str, str], str] = {}
    for res in k["resources"]:
        for doc in _docs(res):
            key = _key(doc)
            assert key not in seen, f"{key} defined in {seen[key]} and {res}: kustomize refuses duplicates"
            seen[key] = res


def test_the_image_is_pinned_by_digest_and_matches_the_daemonset() -> None:
    k = _kustomization()
    (pin,) = k["images"]
    assert pin["name"] == IMAGE and DIGEST.fullmatch(pin["digest"]) and "newTag" not in pin
    images = [c["image"] for d in _docs("daemonset.yaml") for c in _containers(d)]
    assert images and all(_split_image(i) == IMAGE for i in images)
    rendered = [c["image"] for d in _render_here(k) for c in _containers(d)]
    assert rendered == [f"{IMAGE}@{pin['digest']}"] * len(images)


def test_daemonset_runs_as_its_service_account_and_knows_its_node() -> None:
    (ds,) = [d for d in _docs("daemonset.yaml") if d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    accounts = {d["metadata"]["name"] for r in _kustomization()["resources"] for d in _docs(r)}
    assert spec["serviceAccountName"] == "pleg-doctor" and "pleg-doctor" in accounts
    (c,) = spec["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def _validate(docs: list[dict[str, Any]]) -> int:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    n = 0
    for doc in docs:
        if doc["apiVersion"] in CORE_GROUPS:
            kv.validate(doc, version, strict=True)  # raises on an unknown or mistyped field
            n += 1
        else:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
    return n


def test_every_rendered_object_validates() -> None:
    docs = _render_here(_kustomization())
    assert _validate(docs) >= 3  # Namespace, ServiceAccount, DaemonSet at least


def test_a_wrong_image_name_would_not_be_pinned() -> None:
    k = _kustomization()
    k["images"][0]["name"] = "ghcr.io/someone-else/pleg-doctor"
    images = [c["image"] for d in _render_here(k) for c in _containers(d)]
    assert images and all("@" not in i for i in images)  # the look-alike keeps the tag: the check above can fail


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(DEPLOY)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(DEPLOY)]
    return None


def test_kustomize_build_renders_the_same_objects() -> None:
    cmd = _kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl installed: checked structurally only")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    here = _render_here(_kustomization())
    assert sorted(_key(d) for d in built) == sorted(_key(d) for d in here)
    images = [c["image"] for d in built for c in _containers(d)]
    assert images == [c["image"] for d in here for c in _containers(d)]
    assert all(DIGEST.fullmatch(i.split("@")[1]) for i in images)
    _validate(built)
