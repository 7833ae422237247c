"""Find the runtime.v1 FileDescriptorProto that a containerd binary embeds, and compare our subset with it.

Go protobuf code registers each .proto file's serialized FileDescriptorProto in the binary's
data: gogo/protobuf (containerd 1.6/1.7 via k8s.io/cri-api) stores it gzipped; google.golang.org/
protobuf (APIv2) stores it raw. We scan for both and keep the one whose package is `runtime.v1`.
"""

from __future__ import annotations

import mmap
import zlib
from pathlib import Path

from google.protobuf import descriptor_pb2

from plegdoctor.live.gobinary import varint

GZIP_MAGIC = b"\x1f\x8b\x08"
RAW_MARKER = b"\x12\x0aruntime.v1"  # field 2 (package) = "runtime.v1"
MAX_DESCRIPTOR = 1 << 20


def _candidates_gzip(data: mmap.mmap | bytes) -> list[bytes]:
    out: list[bytes] = []
    i = data.find(GZIP_MAGIC)
    while i >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i : i + MAX_DESCRIPTOR], 4 * MAX_DESCRIPTOR)
        except zlib.error:
            raw = b""
        if RAW_MARKER in raw[:256]:
            out.append(raw)
        i = data.find(GZIP_MAGIC, i + 1)
    return out


def _raw_message_end(buf: bytes | mmap.mmap, start: int) -> int:
    """End of a run of well-formed FileDescriptorProto fields starting at `start`."""
    pos = start
    end = min(len(buf), start + MAX_DESCRIPTOR)
    while pos < end:
        try:
            key, p = varint(buf, pos)
        except ValueError:
            break
        field, wire = key >> 3, key & 7
        if not 1 <= field <= 14:
            break
        if wire == 2:
            try:
                length, p = varint(buf, p)
            except ValueError:
                break
            if p + length > end:
                break
            pos = p + length
        elif wire == 0:
            try:
                _, pos = varint(buf, p)
            except ValueError:
                break
        else:
            break
    return pos


def _candidates_raw(data: mmap.mmap | bytes) -> list[bytes]:
    out: list[bytes] = []
    i = data.find(RAW_MARKER)
    while i >= 0:
        # the name field (tag 0x0a, short length) precedes the package
        for back in range(2, 128):
            s = i - back
            if s >= 0 and data[s] == 0x0A and data[s + 1] == back - 2:
                end = _raw_message_end(data, s)
                out.append(bytes(data[s:end]))
                break
        i = data.find(RAW_MARKER, i + 1)
    return out


def find_runtime_v1(binary: str | Path) -> descriptor_pb2.FileDescriptorProto | None:
    """The runtime.v1 FileDescriptorProto embedded in `binary`, or None when there is none."""
    with open(binary, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for raw in _candidates_gzip(data) + _candidates_raw(data):
            fd = descriptor_pb2.FileDescriptorProto()
            try:
                fd.ParseFromString(raw)
            except Exception:
                continue
            if fd.package == "runtime.v1" and any(s.name == "RuntimeService" for s in fd.service):
                return fd
    return None


def _messages(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}"
            out[name] = m
            walk(name, list(m.nested_type))

    walk(f".{fd.package}", list(fd.message_type))
    return out


def compare_subset(ours: descriptor_pb2.FileDescriptorProto, theirs: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Every difference that would break wire compatibility of `ours` against `theirs` (empty: compatible)."""
    problems: list[str] = []
    their_msgs = _messages(theirs)
    for name, msg in _messages(ours).items():
        other = their_msgs.get(name)
        if other is None:
            problems.append(f"message {name} is not in the runtime's API")
            continue
        their_fields = {f.number: f for f in other.field}
        for f in msg.field:
            t = their_fields.get(f.number)
            if t is None:
                problems.append(f"{name}.{f.name} = {f.number}: no field with that number upstream")
                continue
            for attr in ("name", "type", "label", "type_name"):
                if getattr(f, attr) != getattr(t, attr):
                    problems.append(
                        f"{name}.{f.name} = {f.number}: {attr} {getattr(f, attr)!r} != upstream {getattr(t, attr)!r}"
                    )
    their_enums = {f".{theirs.package}.{e.name}": e for e in theirs.enum_type}
    for name, m in their_msgs.items():
        for e in m.enum_type:
            their_enums[f"{name}.{e.name}"] = e
    our_enums = {f".{ours.package}.{e.name}": e for e in ours.enum_type}
    for name, m in _messages(ours).items():
        for e in m.enum_type:
            our_enums[f"{name}.{e.name}"] = e
    for name, e in our_enums.items():
        other_enum = their_enums.get(name)
        if other_enum is None:
            problems.append(f"enum {name} is not in the runtime's API")
            continue
        theirs_values = {v.name: v.number for v in other_enum.value}
        for v in e.value:
            if theirs_values.get(v.name) != v.number:
                problems.append(f"enum {name}.{v.name} = {v.number}: upstream {theirs_values.get(v.name)}")
    their_services = {s.name: {m.name: m for m in s.method} for s in theirs.service}
    for s in ours.service:
        for m in s.method:
            tm = their_services.get(s.name, {}).get(m.name)
            if tm is None:
                problems.append(f"rpc {s.name}.{m.name} is not in the runtime's API")
            elif (m.input_type, m.output_type) != (tm.input_type, tm.output_type):
                problems.append(f"rpc {s.name}.{m.name}: types differ from upstream")
    return problems
