"""A client on a different stack (Python grpcio, stubs generated from our
proto files) casts votes through a real bandvote-grpc process and real nisshi,
and finds the services through server reflection."""

import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The workspace's binaries: scripts/test.sh builds them in the `demo` profile.
BIN = pathlib.Path(os.environ.get("BANDVOTE_BIN_DIR", TARGET / "debug"))
BROKERS = os.environ.get("BANDVOTE_KAFKA_BROKERS", "127.0.0.1:9092")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stubs")
    for proto in ["bandvote/v1/vote.proto", "getinfo.proto"]:
        rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}", str(ROOT / "proto" / proto)])
        assert rc == 0, f"protoc failed for {proto}"
    sys.path.insert(0, str(out))
    from bandvote.v1 import vote_pb2, vote_pb2_grpc  # noqa: E402
    import getinfo_pb2, getinfo_pb2_grpc  # noqa: E402
    return vote_pb2, vote_pb2_grpc, getinfo_pb2, getinfo_pb2_grpc


@pytest.fixture(scope="module")
def server():
    topic = f"pyclient-{uuid.uuid4().hex[:12]}"
    subprocess.run(["nisshi", "topic", "create", topic, "--partitions", "2", "--broker", f"tcp://{BROKERS}"], check=True, capture_output=True)
    grpc_port, rest_port, admin_port = free_port(), free_port(), free_port()
    env = dict(os.environ, BANDVOTE_GRPC_LISTEN=f"127.0.0.1:{grpc_port}", BANDVOTE_REST_LISTEN=f"127.0.0.1:{rest_port}",
               BANDVOTE_GRPC_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", BANDVOTE_TOPIC=topic, RUST_LOG="warn")
    proc = subprocess.Popen([str(BIN / "bandvote-grpc")], env=env)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    yield channel
    channel.close()
    proc.terminate()
    assert proc.wait(timeout=20) == 0, "graceful shutdown exits 0"


def test_cast_and_batch(stubs, server):
    vote_pb2, vote_pb2_grpc, _, _ = stubs
    client = vote_pb2_grpc.VoteServiceStub(server)
    receipt = client.Cast(vote_pb2.Vote(band="Alux Nahual", album="Alux Nahual", year="1983", rank="1", vote_id="py-1"))
    assert receipt.vote_id == "py-1" and receipt.offset >= 0
    votes = iter([vote_pb2.Vote(band="Caifanes", album="El Silencio", year="1992", rank=str(i)) for i in range(1, 4)])
    batch = client.CastBatch(votes)
    assert len(batch.receipts) == 3 and all(r.vote_id for r in batch.receipts)


def test_invalid_vote_is_invalid_argument(stubs, server):
    vote_pb2, vote_pb2_grpc, _, _ = stubs
    client = vote_pb2_grpc.VoteServiceStub(server)
    with pytest.raises(grpc.RpcError) as e:
        client.Cast(vote_pb2.Vote(band="A", album="B", year="83", rank="1"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "year" in e.value.details()


def test_legacy_getinfo_schema(stubs, server):
    _, _, getinfo_pb2, getinfo_pb2_grpc = stubs
    client = getinfo_pb2_grpc.getInfoStub(server)
    reply = client.returnInfo(getinfo_pb2.requestId(album="Fiebre", year="1999", artist="Bohemia Suburbana", ranked="2"))
    assert "stored" in reply.info


def test_reflection_lists_the_services(server):
    stub = reflection_pb2_grpc.ServerReflectionStub(server)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"bandvote.v1.VoteService", "confproto.getInfo"} <= names


def test_malformed_protobuf_is_an_error_and_the_server_stays_up(stubs, server):
    raw = server.unary_unary("/bandvote.v1.VoteService/Cast", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for garbage in [b"\xff\xff\xff\xff\x0f", b"\x0a\xff\xff\xff", bytes(range(256))]:
        with pytest.raises(grpc.RpcError) as e:
            raw(garbage, timeout=10)
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT), e.value
    vote_pb2, vote_pb2_grpc, _, _ = stubs
    ok = vote_pb2_grpc.VoteServiceStub(server).Cast(vote_pb2.Vote(band="Still Up", album="A", year="2000", rank="1"))
    assert ok.vote_id


STUDENT_PROTO = """
syntax = "proto3";
package confproto;
service getInfo {
  rpc returnInfo (requestId) returns (replyInfo) {}
}
message requestId {
  string name = 1;
  string album = 2;
  string year = 3;
  string rank = 4;
}
message replyInfo {
  string info = 1;
}
"""

STUDENT_CLIENT = """
import sys, grpc
sys.path.insert(0, sys.argv[1])
import student_pb2, student_pb2_grpc
stub = student_pb2_grpc.getInfoStub(grpc.insecure_channel(sys.argv[2]))
try:
    print("OK", stub.returnInfo(student_pb2.requestId(name="Caifanes", album="El Silencio", year="1992", rank="1"), timeout=20).info)
except grpc.RpcError as e:
    print(e.code().name, e.details())
"""


def test_student_getinfo_layout_is_served_when_configured(tmp_path):
    """Most student projects of the course call the same getInfo/returnInfo
    with requestId { name = 1; album = 2; year = 3; rank = 4 }: a client
    generated from that proto is served with --getinfo-layout student and
    refused (INVALID_ARGUMENT naming the year) with the course's layout."""
    (tmp_path / "student.proto").write_text(STUDENT_PROTO)
    rc = protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(tmp_path / "student.proto")])
    assert rc == 0
    topic = f"pystudent-{uuid.uuid4().hex[:12]}"
    subprocess.run(["nisshi", "topic", "create", topic, "--partitions", "1", "--broker", f"tcp://{BROKERS}"], check=True, capture_output=True)
    answers = {}
    for layout in ["student", "course"]:
        grpc_port, rest_port, admin_port = free_port(), free_port(), free_port()
        env = dict(os.environ, BANDVOTE_GRPC_LISTEN=f"127.0.0.1:{grpc_port}", BANDVOTE_REST_LISTEN=f"127.0.0.1:{rest_port}",
                   BANDVOTE_GRPC_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", BANDVOTE_TOPIC=topic, RUST_LOG="warn",
                   BANDVOTE_GETINFO_LAYOUT=layout)
        proc = subprocess.Popen([str(BIN / "bandvote-grpc")], env=env)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            grpc.channel_ready_future(channel).result(timeout=30)
            channel.close()
            out = subprocess.run([sys.executable, "-c", STUDENT_CLIENT, str(tmp_path), f"127.0.0.1:{grpc_port}"], capture_output=True, text=True, timeout=60)
            answers[layout] = out.stdout.strip() or out.stderr.strip()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert answers["student"].startswith("OK") and "stored" in answers["student"], answers
    assert answers["course"].startswith("INVALID_ARGUMENT") and "year" in answers["course"], answers
