"""Our runtime.v1 proto subset is wire-compatible with the descriptor the containerd binary embeds."""

from __future__ import annotations

import os
import shutil

import pytest
from google.protobuf import descriptor_pb2

from plegdoctor.live.cri import api
from plegdoctor.live.cri.embedded import compare_subset, find_runtime_v1


def _containerd() -> str:
    path = shutil.which("containerd")
    if path is None:
        if os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1":
            pytest.fail("containerd is not installed and PLEG_DOCTOR_REQUIRE_INTEGRATION=1")
        pytest.skip("containerd is not installed (apt-get install containerd)")
    return path


def test_subset_matches_containerd_embedded_descriptor() -> None:
    theirs = find_runtime_v1(_containerd())
    assert theirs is not None, "no runtime.v1 descriptor found in the containerd binary"
    assert theirs.package == "runtime.v1"
    ours = api.file_descriptor_proto()
    assert compare_subset(ours, theirs) == []
    # and the subset really covers the calls the probe and the lab make
    names = {m.name for s in ours.service for m in s.method}
    assert {"ListPodSandbox", "ListContainers", "UpdateContainerResources", "PullImage", "Version"} <= names


def test_compare_subset_reports_a_wrong_field_number() -> None:
    ours = api.file_descriptor_proto()
    theirs = descriptor_pb2.FileDescriptorProto()
    theirs.CopyFrom(ours)
    msg = next(m for m in theirs.message_type if m.name == "Container")
    field = next(f for f in msg.field if f.name == "state")
    field.number = 60
    problems = compare_subset(ours, theirs)
    assert problems == [".runtime.v1.Container.state = 6: no field with that number upstream"]
