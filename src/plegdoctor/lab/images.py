"""Synthetic images for the lab, pushed to the local registry (testbed.registry).

- `pleg-doctor/busybox:1`: static busybox (the writers run `dd` from it).
- `pleg-doctor/pause:1`: the sandbox image.
- `pleg-doctor/big:<layers>x<MiB>`: the "large image" pulled during the stall. Each layer is an
  uncompressed tar holding one file of fresh random bytes, so no two layers (and no two images)
  share a digest and containerd must fetch, fsync and unpack every byte. Layers are left
  uncompressed (OCI `tar` media type): random data does not compress, and gzip would only burn
  the two CPUs the stall needs to be measured on.

Pushes are skipped when the registry already holds the tag, so a lab directory keeps its images
between runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass

from plegdoctor.testbed.registry import push_blob, push_busybox, push_pause

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True, slots=True)
class BigImage:
    """Dimensions of the large image."""

    layers: int = 4
    layer_mib: int = 64

    @property
    def tag(self) -> str:
        return f"{self.layers}x{self.layer_mib}m"

    @property
    def total_mib(self) -> int:
        return self.layers * self.layer_mib


@dataclass(frozen=True, slots=True)
class LabImages:
    busybox: str
    pause: str
    big: str


def has_manifest(registry_url: str, name: str, tag: str) -> bool:
    req = urllib.request.Request(
        f"{registry_url}/v2/{name}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def random_layer(index: int, mib: int) -> bytes:
    """An uncompressed tar with one file `data/layer-<index>.bin` of `mib` MiB of random bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("data")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(d)
        info = tarfile.TarInfo(f"data/layer-{index}.bin")
        info.size = mib * 1024 * 1024
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    return buf.getvalue()


def push_big_image(registry_url: str, spec: BigImage, name: str = "pleg-doctor/big") -> str:
    """Push the large image layer by layer (one layer in memory at a time); return its reference."""
    host = registry_url.split("://", 1)[-1]
    ref = f"{host}/{name}:{spec.tag}"
    if has_manifest(registry_url, name, spec.tag):
        return ref
    descriptors = []
    for i in range(spec.layers):
        blob = random_layer(i, spec.layer_mib)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        push_blob(registry_url, name, blob, digest)
        descriptors.append({"mediaType": OCI_LAYER_TAR, "size": len(blob), "digest": digest})
        del blob
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "3600"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
        "history": [{"created_by": "pleg-doctor lab random layer"} for _ in descriptors],
    }
    config_blob = json.dumps(config, sort_keys=True).encode()
    config_digest = push_blob(registry_url, name, config_blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config_blob), "digest": config_digest},
        "layers": descriptors,
    }
    req = urllib.request.Request(
        f"{registry_url}/v2/{name}/manifests/{spec.tag}",
        data=json.dumps(manifest).encode(),
        method="PUT",
        headers={"Content-Type": OCI_MANIFEST},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        if resp.status != 201:
            raise RuntimeError(f"manifest PUT {name}:{spec.tag} failed: HTTP {resp.status}")
    return ref


def ensure_images(registry_url: str, big: BigImage) -> LabImages:
    """Make sure the registry holds the three lab images; return their references."""
    host = registry_url.split("://", 1)[-1]
    busybox = f"{host}/pleg-doctor/busybox:1"
    if not has_manifest(registry_url, "pleg-doctor/busybox", "1"):
        busybox = push_busybox(registry_url)
    pause = f"{host}/pleg-doctor/pause:1"
    if not has_manifest(registry_url, "pleg-doctor/pause", "1"):
        pause = push_pause(registry_url)
    return LabImages(busybox=busybox, pause=pause, big=push_big_image(registry_url, big))
