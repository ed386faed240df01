#!/usr/bin/env python3
"""The demo's contest fans: voters cast votes with a voter id through the
wasm host and the /grpc hop, some twice (past a cap of 1), some for a band
not on the roster, some without a voter, some after the close. Every vote is
retried with its Idempotency-Key on 503 or a network error. Prints a JSON
report of what the intakes answered (stdlib only)."""

import argparse
import concurrent.futures
import json
import time
import urllib.error
import urllib.request


def post(url, body, voter, key):
    headers = {"content-type": "application/json", "idempotency-key": key}
    if voter:
        headers["x-voter"] = voter
    deadline = time.time() + 30
    while True:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            if e.code != 503 or time.time() > deadline:
                return e.code, payload
        except (urllib.error.URLError, OSError):
            if time.time() > deadline:
                return 0, {}
        time.sleep(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True, help="the wasm host's vote URL")
    p.add_argument("--hop", required=True, help="the /grpc hop's vote URL")
    p.add_argument("--roster", required=True, help="comma-separated bands")
    p.add_argument("--voters", type=int, default=300)
    p.add_argument("--run", required=True, help="unique prefix for voter ids and keys")
    p.add_argument("--phase", choices=["open", "closed"], default="open")
    a = p.parse_args()
    roster = a.roster.split(",")
    jobs = []
    if a.phase == "open":
        for i in range(a.voters):
            voter = f"{a.run}-fan-{i}"
            url = a.hop if i % 3 == 0 else a.host
            band = roster[(i * 7 + i // 5) % len(roster)]
            # Typed as a fan would: the roster matches case and spacing.
            sent_band = band.lower() if i % 4 == 0 else band
            jobs.append((url, sent_band, voter, f"{voter}-1"))
            if i % 5 == 0:  # votes again: past the cap of 1, stored as over_limit
                jobs.append((url, roster[(i + 1) % len(roster)], voter, f"{voter}-2"))
            if i % 10 == 0:  # a band that is not in the contest: 422 unknown_band
                jobs.append((url, "Los Inventados", voter, f"{voter}-x"))
            if i % 15 == 0:  # no voter: 422 voter_required
                jobs.append((url, band, None, f"{voter}-anon"))
    else:
        for i in range(max(a.voters // 15, 1)):
            voter = f"{a.run}-late-{i}"
            jobs.append((a.host, roster[i % len(roster)], voter, f"{voter}-1"))

    def cast(job):
        url, band, voter, key = job
        status, body = post(url, {"name": band, "album": "En Vivo", "year": "2026", "rank": "1"}, voter, key)
        return status, (body.get("error") or {}).get("code"), body.get("vote_id")

    report = {"sent": len(jobs), "acked": 0, "by_code": {}, "vote_ids": []}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for status, code, vote_id in pool.map(cast, jobs):
            if 200 <= status < 300:
                report["acked"] += 1
                if len(report["vote_ids"]) < 3:
                    report["vote_ids"].append(vote_id)
            else:
                key = f"{status} {code or 'no_answer'}"
                report["by_code"][key] = report["by_code"].get(key, 0) + 1
    print(json.dumps(report))


if __name__ == "__main__":
    main()
