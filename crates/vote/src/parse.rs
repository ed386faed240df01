use serde_json::{Map, Value};

use crate::error::{FieldProblem, VoteError};
use crate::limits;
use crate::vote::{assemble_batch, resolve_single_id, check_vote_id, RawVote, Received, Vote};

/// A parsed HTTP submission: one vote, or a batch (a JSON array).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub votes: Vec<Vote>,
    /// True when the body was a JSON array (answer with a list of receipts).
    pub batch: bool,
}

/// Accept the content types real clients send: none, `application/json`,
/// `*/*+json`, `text/plain`, and `application/x-www-form-urlencoded` (what
/// `curl -d` sends with a JSON body). A `charset` other than UTF-8 is refused.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), VoteError> {
    let Some(ct) = content_type else { return Ok(()) };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mime_ok = mime.is_empty()
        || mime == "application/json"
        || mime == "text/plain"
        || mime == "application/x-www-form-urlencoded"
        || (mime.starts_with("application/") && mime.ends_with("+json"));
    let charset_ok = parts.all(|p| {
        let mut kv = p.splitn(2, '=');
        let key = kv.next().unwrap_or("").trim();
        let val = kv.next().unwrap_or("").trim().trim_matches('"');
        !key.eq_ignore_ascii_case("charset") || val.eq_ignore_ascii_case("utf-8") || val.eq_ignore_ascii_case("utf8")
    });
    if mime_ok && charset_ok { Ok(()) } else { Err(VoteError::UnsupportedContentType(ct.chars().take(100).collect())) }
}

/// Parse and validate an HTTP request body: a vote object in either client
/// shape (`{"name","album","year","rank"}` or `{"album","year","artist","ranked"}`),
/// or a JSON array of them. Never panics, whatever the bytes.
pub fn parse_body(content_type: Option<&str>, body: &[u8], received: &Received) -> Result<Submission, VoteError> {
    if body.len() > limits::MAX_BODY_BYTES {
        return Err(VoteError::BodyTooLarge { size: body.len(), limit: limits::MAX_BODY_BYTES });
    }
    check_content_type(content_type)?;
    let key = match &received.idempotency_key {
        Some(k) => Some(check_vote_id("Idempotency-Key", k.clone())?),
        None => None,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| VoteError::MalformedJson(e.to_string()))?;
    match value {
        Value::Object(map) => {
            let raw = with_voter(raw_from_json(map)?, received)?;
            let id = resolve_single_id(&raw, key.as_deref())?;
            let vote = raw.validate(received.source, received.received_at_ms, id)?;
            Ok(Submission { votes: vec![vote], batch: false })
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(VoteError::EmptyBatch);
            }
            if items.len() > limits::MAX_BATCH {
                return Err(VoteError::BatchTooLarge { len: items.len(), limit: limits::MAX_BATCH });
            }
            let raws = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let Value::Object(map) = item else { return Err(VoteError::NotAnObject) };
                    raw_from_json(map).and_then(|r| with_voter(r, received)).map_err(|e| e.at_index(i))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let votes = assemble_batch(raws, key.as_deref(), received.source, received.received_at_ms)?;
            Ok(Submission { votes, batch: true })
        }
        _ => Err(VoteError::NotAnObject),
    }
}

/// The `X-Voter` header is the voter of every vote in the body that names
/// none; a `voter` field that names another is a conflict (422).
fn with_voter(mut raw: RawVote, received: &Received) -> Result<RawVote, VoteError> {
    match (raw.voter.as_deref(), received.voter.as_deref()) {
        (Some(own), Some(h)) if own.trim() != h.trim() => Err(VoteError::field("voter", FieldProblem::Conflict { with: "X-Voter" })),
        (None, Some(h)) => {
            raw.voter = Some(h.to_owned());
            Ok(raw)
        }
        _ => Ok(raw),
    }
}

/// Map either client shape onto a [`RawVote`]. Aliases that both appear must agree.
fn raw_from_json(map: Map<String, Value>) -> Result<RawVote, VoteError> {
    let mut raw = RawVote::default();
    let mut seen: [Option<&'static str>; 2] = [None, None];
    for (key, value) in map {
        let (slot, canonical, alias_slot): (&mut Option<String>, &'static str, Option<usize>) = match key.as_str() {
            "name" | "artist" | "band" => (&mut raw.band, "band", Some(0)),
            "rank" | "ranked" => (&mut raw.rank, "rank", Some(1)),
            "album" => (&mut raw.album, "album", None),
            "year" => (&mut raw.year, "year", None),
            "vote_id" => (&mut raw.vote_id, "vote_id", None),
            "voter" => (&mut raw.voter, "voter", None),
            _ => return Err(VoteError::field(truncate(&key), FieldProblem::Unknown)),
        };
        let numbers_ok = matches!(canonical, "year" | "rank");
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) if numbers_ok => n.to_string(),
            _ => {
                let expected = if numbers_ok { "string or number" } else { "string" };
                return Err(VoteError::field(field_name(&key), FieldProblem::WrongType { expected }));
            }
        };
        if let Some(i) = alias_slot {
            let name = field_name(&key);
            if let (Some(prev), Some(prev_name)) = (slot.as_ref(), seen[i]) {
                if prev.split_whitespace().ne(text.split_whitespace()) {
                    // Name the same field whatever order the JSON map iterates in.
                    let (first, second) = if alias_rank(prev_name) < alias_rank(name) { (prev_name, name) } else { (name, prev_name) };
                    return Err(VoteError::field(second, FieldProblem::Conflict { with: first }));
                }
            }
            seen[i] = Some(name);
        }
        *slot = Some(text);
    }
    Ok(raw)
}

fn field_name(key: &str) -> &'static str {
    match key {
        "name" => "name",
        "artist" => "artist",
        "band" => "band",
        "rank" => "rank",
        "ranked" => "ranked",
        "album" => "album",
        "year" => "year",
        "voter" => "voter",
        _ => "vote_id",
    }
}

/// Order of aliases in error messages: the primary name first.
fn alias_rank(name: &str) -> u8 {
    match name {
        "name" | "rank" => 0,
        "artist" | "ranked" => 1,
        _ => 2,
    }
}

fn truncate(key: &str) -> String {
    key.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    fn rx() -> Received {
        Received::new(Source::Http, 1_700_000_000_000)
    }

    fn err(body: &str) -> VoteError {
        parse_body(Some("application/json"), body.as_bytes(), &rx()).unwrap_err()
    }

    #[test]
    fn a_voter_comes_from_the_body_or_the_header_and_keys_the_record() {
        let body = br#"{"name":"Alux Nahual","album":"a","year":"1983","rank":"1","voter":" fan-1 "}"#;
        let v = parse_body(None, body, &rx()).unwrap().votes.remove(0);
        assert_eq!(v.voter.as_deref(), Some("fan-1"));
        assert_eq!(crate::record::encode(&v).key, b"fan-1", "one voter, one partition");
        let plain = br#"{"name":"Alux Nahual","album":"a","year":"1983","rank":"1"}"#;
        let h = parse_body(None, plain, &rx().with_voter(Some("fan-2".into()))).unwrap().votes.remove(0);
        assert_eq!(h.voter.as_deref(), Some("fan-2"));
        assert!(!String::from_utf8(crate::record::encode(&parse_body(None, plain, &rx()).unwrap().votes[0]).value).unwrap().contains("voter"));
        let e = parse_body(None, body, &rx().with_voter(Some("fan-2".into()))).unwrap_err();
        assert!(matches!(e, VoteError::Field { ref field, .. } if field == "voter"), "{e}");
        let e = err(r#"{"name":"a","album":"a","year":"1983","rank":"1","voter":"two words"}"#);
        assert!(matches!(e, VoteError::Field { ref field, problem: FieldProblem::ControlCharacter } if field == "voter"), "{e}");
    }

    #[test]
    fn accepts_both_client_shapes() {
        let a = parse_body(None, br#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#, &rx()).unwrap();
        let b = parse_body(
            Some("application/x-www-form-urlencoded"),
            br#"{"album":"Alux Nahual","year":"1983","artist":"Alux Nahual","ranked":"01"}"#,
            &rx(),
        )
        .unwrap();
        assert!(!a.batch && !b.batch);
        let (a, b) = (&a.votes[0], &b.votes[0]);
        assert_eq!((&a.band, &a.album, a.year, a.rank), (&b.band, &b.album, b.year, b.rank));
    }

    #[test]
    fn batch_with_idempotency_key() {
        let body = br#"[{"name":"A","album":"x","year":"2001","rank":"1"},{"artist":"B","album":"y","year":"2002","ranked":"2"}]"#;
        let s = parse_body(None, body, &rx().with_idempotency_key(Some("req-9".into()))).unwrap();
        assert!(s.batch);
        let ids: Vec<&str> = s.votes.iter().map(|v| v.vote_id.as_str()).collect();
        assert!(ids.iter().all(|id| id.starts_with("req-9#") && id.len() == "req-9#".len() + 32), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
        for v in &s.votes {
            v.check().unwrap();
        }
        let one = br#"{"name":"A","album":"x","year":"2001","rank":"1"}"#;
        let single = parse_body(None, one, &rx().with_idempotency_key(Some("req-9".into()))).unwrap();
        assert_eq!(single.votes[0].vote_id, "req-9");
        // Retrying only the second item keeps its id (ids do not depend on the position).
        let second = br#"[{"artist":"B","album":"y","year":"2002","ranked":"2"}]"#;
        let retry = parse_body(None, second, &rx().with_idempotency_key(Some("req-9".into()))).unwrap();
        assert_eq!(retry.votes[0].vote_id, ids[1]);
        // Another key never yields the same ids, and no client key can equal a derived id.
        let other = parse_body(None, body, &rx().with_idempotency_key(Some("req-10".into()))).unwrap();
        assert!(other.votes.iter().all(|v| !ids.contains(&v.vote_id.as_str())));
        assert!(parse_body(None, one, &rx().with_idempotency_key(Some(ids[0].to_owned()))).is_err());
    }

    #[test]
    fn key_and_vote_id_that_disagree_or_repeat_are_refused() {
        let own = br#"{"name":"A","album":"x","year":"2001","rank":"1","vote_id":"mine"}"#;
        let e = parse_body(None, own, &rx().with_idempotency_key(Some("other".into()))).unwrap_err();
        assert_eq!((e.http_status(), e.to_json()["error"]["field"].as_str(), e.to_json()["error"]["problem"].as_str()), (422, Some("vote_id"), Some("conflict")));
        assert_eq!(parse_body(None, own, &rx().with_idempotency_key(Some("mine".into()))).unwrap().votes[0].vote_id, "mine");
        let twice = br#"[{"name":"A","album":"x","year":"2001","rank":"1","vote_id":"d"},{"name":"B","album":"x","year":"2001","rank":"1","vote_id":"d"}]"#;
        let e = parse_body(None, twice, &rx()).unwrap_err();
        assert_eq!((e.to_json()["error"]["field"].as_str(), e.to_json()["error"]["problem"].as_str()), (Some("[1].vote_id"), Some("duplicate_in_batch")));
        let same = br#"[{"name":"A","album":"x","year":"2001","rank":"1"},{"name":"A","album":"x","year":"2001","rank":"1"}]"#;
        assert!(parse_body(None, same, &rx().with_idempotency_key(Some("k".into()))).is_err(), "identical items under one key");
        assert_eq!(parse_body(None, same, &rx()).unwrap().votes.len(), 2, "without a key each gets a fresh id");
    }

    #[test]
    fn error_classes_and_statuses() {
        assert_eq!(err("{").http_status(), 400);
        assert_eq!(err("[]"), VoteError::EmptyBatch);
        assert_eq!(err("42"), VoteError::NotAnObject);
        assert_eq!(err("[1]"), VoteError::NotAnObject);
        let e = err(r#"{"name":"a","album":"b","year":"1983","rank":"1","colour":"red"}"#);
        assert_eq!(e, VoteError::field("colour", FieldProblem::Unknown));
        assert_eq!(e.http_status(), 422);
        let e = err(r#"{"name":"a","artist":"b","album":"b","year":"1983","rank":"1"}"#);
        assert_eq!(e, VoteError::field("artist", FieldProblem::Conflict { with: "name" }));
        let e = err(r#"{"name":7,"album":"b","year":"1983","rank":"1"}"#);
        assert_eq!(e, VoteError::field("name", FieldProblem::WrongType { expected: "string" }));
        let e = err(r#"[{"name":"a","album":"b","year":"1983","rank":"1"},{"name":"a","album":"b","year":"83","rank":"1"}]"#);
        assert_eq!(e, VoteError::field("[1].year", FieldProblem::NotAYear));
        let body = e.to_json();
        assert_eq!(body["error"]["field"], "[1].year");
        assert_eq!(body["error"]["problem"], "not_a_year");
        assert_eq!(body["error"]["status"], 422);
        let big = vec![b' '; limits::MAX_BODY_BYTES + 1];
        assert_eq!(parse_body(None, &big, &rx()).unwrap_err().http_status(), 413);
        let e = parse_body(Some("application/xml"), b"{}", &rx()).unwrap_err();
        assert_eq!(e.http_status(), 415);
        assert!(check_content_type(Some("application/json; charset=latin1")).is_err());
        assert!(check_content_type(Some("application/json; charset=UTF-8")).is_ok());
        assert_eq!(parse_body(None, b"\xff\xfe", &rx()).unwrap_err().http_status(), 400);
        let deep = "[".repeat(10_000);
        assert_eq!(parse_body(None, deep.as_bytes(), &rx()).unwrap_err().http_status(), 400);
        let key = parse_body(None, b"{}", &rx().with_idempotency_key(Some("bad key".into()))).unwrap_err();
        assert_eq!(key, VoteError::field("Idempotency-Key", FieldProblem::BadVoteId));
    }

    #[test]
    fn numbers_accepted_for_year_and_rank() {
        let s = parse_body(None, br#"{"name":"a","album":"b","year":1983,"rank":8.5}"#, &rx()).unwrap();
        assert_eq!((s.votes[0].year, s.votes[0].rank), (1983, 8.5));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::Source;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any byte string either parses or returns a typed error; never panics.
        #[test]
        fn any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_body(None, &body, &Received::new(Source::Http, 0));
        }

        /// JSON-ish input built from the real field names exercises the validator deeper.
        #[test]
        fn any_field_values_never_panic(
            band in ".{0,40}", album in ".{0,40}", year in "[0-9a-z ]{0,6}", rank in "[0-9.eE+-]{0,8}",
            key in prop::sample::select(vec!["name", "artist", "band", "colour"]),
        ) {
            let body = serde_json::json!({ key: band, "album": album, "year": year, "ranked": rank }).to_string();
            match parse_body(Some("application/json"), body.as_bytes(), &Received::new(Source::Http, 0)) {
                Ok(s) => for v in &s.votes { prop_assert!(v.check().is_ok()); },
                Err(e) => { prop_assert!(matches!(e.http_status(), 400 | 413 | 415 | 422)); }
            }
        }

        /// Valid votes survive the Kafka record round trip unchanged.
        #[test]
        fn record_round_trip(band in "[A-Za-z][A-Za-z ]{0,30}", year in 1000u16..=2100, rank in 0u32..1000) {
            let raw = RawVote { band: Some(band), album: Some("x".into()), year: Some(year.to_string()), rank: Some(rank.to_string()), vote_id: None, voter: None };
            let vote = raw.validate(Source::Grpc, 5, None).unwrap();
            let rec = crate::record::encode(&vote);
            prop_assert_eq!(crate::record::decode(&rec.value).unwrap(), vote);
        }
    }
}
