"""A bulletin verifier written from docs/bulletin.md alone, run on the sample
bulletin our code writes (tests/fixtures/bulletin-sample.*): the format is
implementable from the doc, not only by our code. Tampering is caught."""

import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves):
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def verify(text: str, contest: str):
    """(root hex, counted per band, per status), or ValueError naming the line."""
    leaves, bands, statuses, last = [], {}, {}, None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError(f"line {n}: not JSON: {e}")
        if list(obj) != ["leaf", "band", "status"]:
            raise ValueError(f"line {n}: keys {list(obj)}")
        if json.dumps(obj, separators=(",", ":"), ensure_ascii=False) != line:
            raise ValueError(f"line {n}: not canonical")
        leaf = obj["leaf"]
        if len(leaf) != 64 or any(c not in "0123456789abcdef" for c in leaf):
            raise ValueError(f"line {n}: bad leaf")
        if last is not None and leaf <= last:
            raise ValueError(f"line {n}: out of order")
        last = leaf
        leaves.append(sha256(b"\x00" + line.encode()))
        statuses[obj["status"]] = statuses.get(obj["status"], 0) + 1
        if obj["status"] == "counted":
            bands[obj["band"]] = bands.get(obj["band"], 0) + 1
    return mth(leaves).hex(), bands, statuses


def leaf_of(contest: str, vote_id: str) -> str:
    return hashlib.sha256(b"bandvote-leaf-v1\x00" + contest.encode() + b"\x00" + vote_id.encode()).hexdigest()


def sample():
    meta = json.loads((FIXTURES / "bulletin-sample.json").read_text())
    return (FIXTURES / "bulletin-sample.ndjson").read_text(encoding="utf-8"), meta


def test_the_sample_bulletin_verifies_from_the_doc_alone():
    text, meta = sample()
    root, bands, statuses = verify(text, meta["contest"])
    assert root == meta["root"]
    assert bands == meta["by_band"] and statuses == meta["by_status"]
    lines = text.splitlines()
    for vote_id, band, status in meta["receipts"]:
        line = next(l for l in lines if json.loads(l)["leaf"] == leaf_of(meta["contest"], vote_id))
        assert (json.loads(line)["band"], json.loads(line)["status"]) == (band, status)


def test_tampering_is_caught_and_named():
    text, meta = sample()
    lines = text.splitlines()
    swapped = lines[:]
    swapped[1] = swapped[1].replace('"counted"', '"over_limit"') if '"counted"' in swapped[1] else swapped[1].replace('"status":"', '"status":"counted', 1)
    assert verify("\n".join(swapped) + "\n", meta["contest"])[0] != meta["root"]
    dropped = lines[:2] + lines[3:]
    assert verify("\n".join(dropped) + "\n", meta["contest"])[0] != meta["root"]
    reordered = [lines[1], lines[0]] + lines[2:]
    try:
        verify("\n".join(reordered) + "\n", meta["contest"])
        raise AssertionError("reordered lines passed")
    except ValueError as e:
        assert "line 2" in str(e)
