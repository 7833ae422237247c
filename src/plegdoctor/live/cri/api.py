"""runtime.v1 message classes built at run time from the committed descriptor (see gen.py for why).

Use attribute access for message classes (`api.PodSandboxConfig(...)`) and `enum_value` /
`enum_name` for enums. The classes live in a private descriptor pool, so another package that
registers `runtime.v1` in protobuf's default pool cannot clash with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from plegdoctor.live.cri._descriptor import FILE_DESCRIPTOR

PACKAGE = "runtime.v1"

_POOL = descriptor_pool.DescriptorPool()
FILE = _POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR))
if not hasattr(FILE, "message_types_by_name"):  # older protobuf: Add returns None
    FILE = _POOL.FindFileByName(descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR).name)


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """Our proto subset as a FileDescriptorProto (for comparing with the runtime's own)."""
    return descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR)


@cache
def message_class(name: str) -> Any:
    """The message class for `runtime.v1.<name>`; KeyError if the subset lacks it."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def enum_value(enum: str, name: str) -> int:
    return int(_POOL.FindEnumTypeByName(f"{PACKAGE}.{enum}").values_by_name[name].number)


def enum_name(enum: str, number: int) -> str:
    values = _POOL.FindEnumTypeByName(f"{PACKAGE}.{enum}").values_by_number
    value = values.get(number)
    return value.name if value is not None else str(number)


@dataclass(frozen=True, slots=True)
class Method:
    service: str  # "RuntimeService" | "ImageService"
    name: str
    request: Any
    response: Any

    @property
    def path(self) -> str:
        return f"/{PACKAGE}.{self.service}/{self.name}"


@cache
def methods() -> dict[str, Method]:
    """Every RPC of the subset by method name."""
    out: dict[str, Method] = {}
    for service in FILE.services_by_name.values():
        for m in service.methods:
            out[m.name] = Method(
                service=service.name,
                name=m.name,
                request=message_factory.GetMessageClass(m.input_type),
                response=message_factory.GetMessageClass(m.output_type),
            )
    return out


def __getattr__(name: str) -> Any:
    if name[:1].isupper():
        try:
            return message_class(name)
        except KeyError:
            pass
    raise AttributeError(name)
