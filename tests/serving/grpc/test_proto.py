"""Our proto is wire-compatible with the protocol (tritonclient's copy of Triton's) and the
committed generated code is what the proto and _proto/README produce."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2 as triton

from modelyard.serving.grpc._proto import grpc_service_pb2 as ours

PROTO_DIR = Path(ours.__file__).parent
SRC = PROTO_DIR.parents[3]


def _fields(message: Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {
        f.name: (f.number, f.type, f.is_repeated, getattr(f.message_type, "full_name", ""))
        for f in message.fields
    }


def _messages(message: Descriptor) -> list[Descriptor]:
    return [message, *(m for nested in message.nested_types for m in _messages(nested))]


@pytest.mark.parametrize("name", sorted(ours.DESCRIPTOR.message_types_by_name))
def test_messages_match_the_protocol_field_for_field(name: str) -> None:
    for message in _messages(ours.DESCRIPTOR.message_types_by_name[name]):
        theirs = triton.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
        assert _fields(message) == _fields(theirs), message.full_name


def test_every_method_is_the_protocols() -> None:
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    reference = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    for method in service.methods:
        other = reference.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name, other.output_type.full_name
        )
    assert {m.name for m in service.methods} == {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    # grpcio-tools is a test dependency (pinned): the check always runs.
    relative = PROTO_DIR.relative_to(SRC)
    (tmp_path / relative).mkdir(parents=True)
    shutil.copy(PROTO_DIR / "grpc_service.proto", tmp_path / relative)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(tmp_path / relative / "grpc_service.proto")],
        check=True, timeout=60,
    )
    generated = tmp_path / relative / "grpc_service_pb2.py"
    # The README's sed step: a private descriptor pool, so tritonclient can share the process.
    generated.write_text(generated.read_text().replace(
        "_descriptor_pool.Default().AddSerializedFile(",
        "_descriptor_pool.DescriptorPool().AddSerializedFile(",
    ))
    for name in ("grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py"):
        assert (tmp_path / relative / name).read_text() == (PROTO_DIR / name).read_text(), (
            f"{name} is stale: regenerate as _proto/README says"
        )
