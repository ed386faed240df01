"""docs/openapi.yaml parses and names exactly the error codes and problems the code emits."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_openapi_matches_the_code():
    spec = yaml.safe_load((ROOT / "docs/openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.")
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    vote_err = (ROOT / "crates/vote/src/error.rs").read_text()
    problems = set(re.findall(r'Self::\w+(?: \{ \.\. \})? => "([a-z_]+)",', vote_err.split("pub fn code(&self)")[1].split("}\n}")[0]))
    assert set(error["problem"]["enum"]) == problems
    codes = set(re.findall(r'Self::\w+(?: \{ \.\. \}|\(_\))? => "([a-z_]+)"', vote_err.split("impl VoteError")[1]))
    core = (ROOT / "crates/intake-core/src/lib.rs").read_text()
    codes |= set(re.findall(r'simple\(\d+, "([a-z_]+)"', core)) | set(re.findall(r'\("([a-z_]+)", (?:\*retry_after_secs|1)\)', core))
    codes |= {"timeout", "unavailable"}
    refusal = (ROOT / "crates/contest/src/refusal.rs").read_text()
    rules = set(re.findall(r'Self::\w+(?: \{ \.\. \}|\(_\))? => "([a-z_]+)"', refusal.split("pub fn code(&self)")[1].split("pub fn http_status")[0]))
    assert rules == {"unknown_band", "voting_not_open", "voting_closed", "voter_required", "vote_limit_reached", "invalid_voter_token", "invalid_voter_id"}, rules
    codes |= rules
    admission = (ROOT / "crates/admission/src/error.rs").read_text()
    names = set(re.findall(r'=> \("(too_many_[a-z]+)", "', admission))
    assert names == {"too_many_bands", "too_many_albums"}, names
    codes |= names
    assert codes <= set(error["code"]["enum"]), codes - set(error["code"]["enum"])
    for path in ["/", "/api/results", "/api/stream", "/api/log", "/healthz", "/readyz"]:
        assert path in spec["paths"]
