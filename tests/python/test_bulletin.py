"""The bulletin verifier written from docs/bulletin.md alone
(tests/python/bulletin_verifier.py), run on the sample bulletin our code
writes (tests/fixtures/bulletin-sample.*): the format is implementable from
the doc, not only by our code. Tampering is caught and named. (The service
test crates/service-tests/tests/bulletin.rs runs the same verifier on a
contest certified by the real pipeline.)"""

import json
import pathlib

import pytest

from bulletin_verifier import leaf_of, verify

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures"


def sample():
    meta = json.loads((FIXTURES / "bulletin-sample.json").read_text())
    certificate = {"bulletin_root": meta["root"], "bulletin_lines": sum(meta["by_status"].values()),
                   "by_band": meta["by_band"], "by_status": meta["by_status"]}
    return (FIXTURES / "bulletin-sample.ndjson").read_text(encoding="utf-8"), meta, certificate


def test_the_sample_bulletin_verifies_from_the_doc_alone():
    text, meta, certificate = sample()
    root, bands, statuses = verify(text, meta["root"], certificate, meta["index"])
    assert root == meta["root"]
    assert bands == meta["by_band"] and statuses == meta["by_status"]
    lines = text.splitlines()
    for vote_id, band, status in meta["receipts"]:
        line = next(l for l in lines if json.loads(l)["leaf"] == leaf_of(meta["contest"], vote_id))
        assert (json.loads(line)["band"], json.loads(line)["status"]) == (band, status)


def test_tampering_is_caught_and_named():
    text, meta, certificate = sample()
    lines = text.splitlines()
    n = len(lines)

    def fails(tampered, root=meta["root"], index=meta["index"]):
        with pytest.raises(ValueError) as e:
            verify("\n".join(tampered) + "\n", root, certificate, index)
        return str(e.value)

    swapped = lines[:]
    obj = json.loads(swapped[1])
    obj["band"] = "Molotov"
    swapped[1] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    assert f"lines 1-{n}" in fails(swapped)
    assert "root" in fails(swapped, index=None)
    assert f"lines 1-{n}" in fails(lines[:2] + lines[3:]), "a dropped line"
    assert "line 2" in fails([lines[1], lines[0]] + lines[2:]), "reordered"
    assert "line 3: not canonical" in fails(lines[:2] + [lines[2].replace(":", ": ", 1)] + lines[3:])
    assert "not the certified one" in fails(lines, root="00" * 32), "a changed root"
    # A recount that agrees with the root but not with the certificate's tally.
    with pytest.raises(ValueError, match="band 'Maná'"):
        verify(text, meta["root"], {**certificate, "by_band": {**meta["by_band"], "Maná": 99}}, meta["index"])
