"""A bulletin verifier written from docs/bulletin.md alone (no code of ours):
the format is implementable from the doc, not only by bandvote.

    python3 tests/python/bulletin_verifier.py BULLETIN (--root HEX | --certificate FILE) [--index FILE]

Exit 0 when the bulletin recounts to what the certificate states; exit 1
naming the first difference: a line that breaks the format, the run of
lines the index does not certify, the root, a band's or status's count."""

import argparse
import hashlib
import json
import sys

CHUNK_LINES = 256


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves):
    """RFC 9162 Merkle tree hash over leaf hashes."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def leaf_of(contest: str, vote_id: str) -> str:
    return hashlib.sha256(b"bandvote-leaf-v1\x00" + contest.encode() + b"\x00" + vote_id.encode()).hexdigest()


def check_index(index, root):
    """The index is certified by the root: runs of 256 lines from line 1, roots' root = root."""
    nxt = 1
    for i, e in enumerate(index):
        if list(e) != ["first_line", "lines", "root"] or e["first_line"] != nxt or not 0 < e["lines"] <= CHUNK_LINES \
                or (e["lines"] != CHUNK_LINES and i + 1 != len(index)):
            raise ValueError(f"index entry {i + 1}: not the run of lines {nxt}.. it should be")
        nxt += e["lines"]
    got = mth([bytes.fromhex(e["root"]) for e in index]).hex()
    if got != root:
        raise ValueError(f"the index is not the certified one: its roots give {got}, the certificate says {root}")


def verify(text: str, root: str, certificate=None, index=None):
    """(root hex, counted per band, per status), or ValueError naming what differs."""
    if index is not None:
        check_index(index, root)
    leaves, bands, statuses, last = [], {}, {}, None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError(f"line {n}: not JSON: {e}")
        if not isinstance(obj, dict) or list(obj) != ["leaf", "band", "status"]:
            raise ValueError(f"line {n}: not a bulletin line")
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
    if index is not None:
        for c in range(0, max(len(leaves), index[-1]["first_line"] + index[-1]["lines"] - 1 if index else 0), CHUNK_LINES):
            mine = leaves[c:c + CHUNK_LINES]
            entry = index[c // CHUNK_LINES] if c // CHUNK_LINES < len(index) else None
            if entry is None or entry["lines"] != len(mine) or entry["root"] != mth(mine).hex():
                last_line = c + max(len(mine), entry["lines"] if entry else 0)
                raise ValueError(f"lines {c + 1}-{last_line}: not the certified ones (a line among them was changed, added or removed)")
    got = mth(leaves).hex()
    if got != root:
        raise ValueError(f"root: the bulletin's is {got}, the certificate says {root}")
    if certificate is not None:
        diffs = []
        if len(leaves) != certificate["bulletin_lines"]:
            diffs.append(f"{len(leaves)} lines, the certificate says {certificate['bulletin_lines']}")
        for what, mine, theirs in (("band", bands, certificate["by_band"]), ("status", statuses, certificate["by_status"])):
            for k in sorted(set(mine) | set(theirs)):
                if mine.get(k, 0) != theirs.get(k, 0):
                    diffs.append(f"{what} {k!r}: {mine.get(k, 0)} in the bulletin, {theirs.get(k, 0)} in the certificate")
        if diffs:
            raise ValueError("tally: " + "; ".join(diffs))
    return got, bands, statuses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bulletin")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--root")
    g.add_argument("--certificate")
    p.add_argument("--index")
    a = p.parse_args(argv)
    certificate = None
    if a.certificate:
        with open(a.certificate, encoding="utf-8") as f:
            certificate = json.load(f)
        if isinstance(certificate.get("certificate"), dict):
            certificate = certificate["certificate"]
    root = a.root or certificate["bulletin_root"]
    index = None
    if a.index:
        with open(a.index, encoding="utf-8") as f:
            index = [json.loads(l) for l in f if l.strip()]
    with open(a.bulletin, encoding="utf-8", newline="") as f:
        text = f.read()
    try:
        got, bands, statuses = verify(text, root, certificate, index)
    except ValueError as e:
        print(f"bulletin {a.bulletin}: {e}", file=sys.stderr)
        return 1
    print(f"bulletin {a.bulletin}: root {got} as certified; counted {bands}; by status {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
