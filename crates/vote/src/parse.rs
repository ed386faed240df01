mod document;

use document::{Document, Entry, FieldValue, Fields, Item, KNOWN};

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
    let document = document::parse(body).map_err(|e| VoteError::MalformedJson(e.to_string()))?;
    match document {
        Document::Object(fields) => {
            let raw = with_voter(raw_from_json(fields)?, received)?;
            let id = resolve_single_id(&raw, key.as_deref())?;
            let vote = raw.validate(received.source, received.received_at_ms, id)?;
            Ok(Submission { votes: vec![vote], batch: false })
        }
        Document::Array { items, len } => {
            if len == 0 {
                return Err(VoteError::EmptyBatch);
            }
            if len > limits::MAX_BATCH {
                return Err(VoteError::BatchTooLarge { len, limit: limits::MAX_BATCH });
            }
            let raws = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let Item::Object(fields) = item else { return Err(VoteError::NotAnObject) };
                    raw_from_json(fields).and_then(|r| with_voter(r, received)).map_err(|e| e.at_index(i))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let votes = assemble_batch(raws, key.as_deref(), received.source, received.received_at_ms)?;
            Ok(Submission { votes, batch: true })
        }
        Document::Scalar => Err(VoteError::NotAnObject),
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

/// Map either client shape onto a [`RawVote`], judging fields in the order
/// their names first appear (a repeated name has its last value). Aliases
/// that both appear must agree.
fn raw_from_json(fields: Fields<'_>) -> Result<RawVote, VoteError> {
    let mut raw = RawVote::default();
    let mut seen: [Option<&'static str>; 2] = [None, None];
    for entry in fields.in_order() {
        let (slot, value) = match entry {
            Entry::Known(slot, value) => (slot, value),
            Entry::Unknown(key) => return Err(VoteError::field(truncate(&key), FieldProblem::Unknown)),
        };
        let key = KNOWN[slot];
        let (target, canonical, alias_slot): (&mut Option<String>, &'static str, Option<usize>) = match key {
            "name" | "artist" | "band" => (&mut raw.band, "band", Some(0)),
            "rank" | "ranked" => (&mut raw.rank, "rank", Some(1)),
            "album" => (&mut raw.album, "album", None),
            "year" => (&mut raw.year, "year", None),
            "vote_id" => (&mut raw.vote_id, "vote_id", None),
            _ => (&mut raw.voter, "voter", None),
        };
        let numbers_ok = matches!(canonical, "year" | "rank");
        let text = match value {
            FieldValue::Text(s) => s.into_owned(),
            FieldValue::Number(n) if numbers_ok => n.to_string(),
            _ => {
                let expected = if numbers_ok { "string or number" } else { "string" };
                return Err(VoteError::field(key, FieldProblem::WrongType { expected }));
            }
        };
        if let Some(i) = alias_slot {
            if let (Some(prev), Some(prev_name)) = (target.as_ref(), seen[i]) {
                if prev.split_whitespace().ne(text.split_whitespace()) {
                    // Name the same field whatever order the fields came in.
                    let (first, second) = if alias_rank(prev_name) < alias_rank(key) { (prev_name, key) } else { (key, prev_name) };
                    return Err(VoteError::field(second, FieldProblem::Conflict { with: first }));
                }
            }
            seen[i] = Some(key);
        }
        *target = Some(text);
    }
    Ok(raw)
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

    /// The parser as it was before `document` (the body read into a
    /// `serde_json::Value` whose maps keep insertion order: the dev-dependency
    /// turns `preserve_order` on for the tests): the reference the one-pass
    /// parser must agree with, error for error.
    mod reference {
        use serde_json::{Map, Value};

        use super::super::{alias_rank, truncate, with_voter};
        use crate::error::{FieldProblem, VoteError};
        use crate::vote::{assemble_batch, resolve_single_id, RawVote, Received};
        use crate::{limits, Vote};

        fn field_name(key: &str) -> &'static str {
            super::super::KNOWN.iter().find(|k| **k == key).copied().unwrap_or("vote_id")
        }

        pub fn raw_from_json(map: Map<String, Value>) -> Result<RawVote, VoteError> {
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

        /// `parse_body` past the content type and key checks.
        pub fn parse_json(body: &[u8], received: &Received) -> Result<Vec<Vote>, VoteError> {
            let value: Value = serde_json::from_slice(body).map_err(|e| VoteError::MalformedJson(e.to_string()))?;
            match value {
                Value::Object(map) => {
                    let raw = with_voter(raw_from_json(map)?, received)?;
                    let id = resolve_single_id(&raw, None)?;
                    Ok(vec![raw.validate(received.source, received.received_at_ms, id)?])
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
                    assemble_batch(raws, None, received.source, received.received_at_ms)
                }
                _ => Err(VoteError::NotAnObject),
            }
        }
    }

    /// Both parsers on one body; generated vote ids (UUIDv7) blanked.
    fn both(body: &[u8]) -> (Result<Vec<Vote>, VoteError>, Result<Vec<Vote>, VoteError>) {
        let blank = |r: Result<Vec<Vote>, VoteError>, body: &[u8]| {
            r.map(|votes| {
                votes
                    .into_iter()
                    .map(|mut v| {
                        if !body.windows(v.vote_id.len().max(1)).any(|w| w == v.vote_id.as_bytes()) {
                            v.vote_id.clear();
                        }
                        v
                    })
                    .collect()
            })
        };
        let rx = Received::new(Source::Http, 1_700_000_000_000);
        let new = parse_body(None, body, &rx).map(|s| s.votes);
        (blank(new, body), blank(reference::parse_json(body, &rx), body))
    }

    #[test]
    fn the_one_pass_parser_agrees_with_the_value_parser_on_the_hard_cases() {
        let cases: &[&str] = &[
            r#"{"name":"A","album":"x","year":"1983","rank":"1"}"#,
            r#"{"album":"x","year":1983,"artist":"A","ranked":2.50}"#,
            // repeated names: the last value, judged where the name first appeared
            r#"{"year":"bad","name":"A","album":"x","year":"1983","rank":"1"}"#,
            r#"{"year":[1],"colour":"red","year":"1983"}"#,
            r#"{"colour":"red","year":{"a":1}}"#,
            r#"{"year":{"a":1},"colour":"red"}"#,
            r#"{"name":"A","artist":"B","colour":"red"}"#,
            r#"{"colour":"red","name":"A","artist":"B"}"#,
            r#"{"artist":"B","name":"A"}"#,
            r#"{"name":"A","name":"B","album":"x","year":"1983","rank":"1"}"#,
            r#"{"name":"A","artist":"B","name":"B","album":"x","year":"1983","rank":"1"}"#,
            r#"{"abc":1,"name":"x"}"#,
            r#"{"name":"Aé","album":"x","year":"1983","rank":"1"}"#,
            // names and values written with escapes (not borrowed from the body)
            r#"{"a\u0062c":1,"name":"x"}"#,
            r#"{"n\u0061me":"A\u00e9","album":"x","year":"1983","rank":"1"}"#,
            r#"{"name":"A","n\u0061me":"B","album":"x","year":"1983","rank":"1"}"#,
            r#"{"year":1e400}"#,
            r#"{"year":-0.0,"rank":1e3,"name":"A","album":"x"}"#,
            r#"{"year":18446744073709551615,"rank":-9223372036854775808}"#,
            r#"{"voter":null,"name":true}"#,
            // a syntax error anywhere wins over any field's problem
            r#"{"colour":"red","name":"A",}"#,
            r#"{"colour":"red"} x"#,
            r#"[{"colour":"red"},"#,
            r#"[]"#,
            r#"[1,{"colour":"red"}]"#,
            r#"[{"colour":"red"},1]"#,
            r#"[[1],{"name":"A"}]"#,
            r#"[{"name":"A","album":"x","year":"1983","rank":"1"},{"name":"B","album":"x","year":"1983","rank":"1"}]"#,
            r#""just a string""#,
            r#"null"#,
            r#"3"#,
            "",
        ];
        for body in cases {
            let (new, old) = both(body.as_bytes());
            assert_eq!(new, old, "{body}");
        }
        // an escaped name is the name it spells
        let escaped = both(br#"{"n\u0061me":"A\u00e9","album":"x","year":"1983","rank":"1"}"#).0.expect("a vote");
        assert_eq!(escaped[0].band, "Aé");
        // nesting deeper than serde_json's recursion limit, inside a field
        let deep = format!(r#"{{"year":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let (new, old) = both(deep.as_bytes());
        assert!(matches!(new, Err(VoteError::MalformedJson(_))), "{new:?}");
        assert_eq!(new, old);
        // a batch past the limit, then one that ends badly
        let many = format!("[{}]", vec![r#"{"name":"A"}"#; limits::MAX_BATCH + 1].join(","));
        assert_eq!(both(many.as_bytes()).0, both(many.as_bytes()).1);
        let broken = format!("[{},", vec![r#"{"name":"A"}"#; limits::MAX_BATCH + 1].join(","));
        let (new, old) = both(broken.as_bytes());
        assert!(matches!(new, Err(VoteError::MalformedJson(_))));
        assert_eq!(new, old);
    }

    /// A body of many tiny items keeps at most a full batch in memory (the
    /// rest are parsed and counted), and is refused by its length as before.
    #[test]
    fn a_long_batch_is_counted_not_kept() {
        let body = format!("[{}0]", "0,".repeat(131_000));
        assert!(body.len() < limits::MAX_BODY_BYTES);
        let Ok(document::Document::Array { items, len }) = document::parse(body.as_bytes()) else { panic!("an array") };
        assert_eq!((items.len(), len), (limits::MAX_BATCH, 131_001));
        let (new, old) = both(body.as_bytes());
        assert_eq!(new, Err(VoteError::BatchTooLarge { len: 131_001, limit: limits::MAX_BATCH }));
        assert_eq!(new, old);
        let exactly = format!("[{}]", vec![r#"{"colour":1}"#; limits::MAX_BATCH].join(","));
        assert!(matches!(both(exactly.as_bytes()).0, Err(VoteError::Field { .. })), "a full batch is judged item by item");
    }

    /// serde_json's raw-value marker key (honoured by `Value` where its
    /// `raw_value` feature is on) is an unknown field like any other.
    #[test]
    fn the_raw_value_marker_is_just_an_unknown_field() {
        let body = r#"{"$serde_json::private::RawValue":"{\"name\":\"A\",\"album\":\"x\",\"year\":\"1983\",\"rank\":\"1\"}"}"#;
        let e = parse_body(None, body.as_bytes(), &Received::new(Source::Http, 0)).unwrap_err();
        assert!(matches!(&e, VoteError::Field { field, problem: FieldProblem::Unknown } if field == "$serde_json::private::RawValue"), "{e:?}");
    }

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

        /// Objects built from the field names, their aliases, an unknown name
        /// and values of every JSON type, names repeated: the one-pass parser
        /// gives what the `Value` parser gave, error for error.
        #[test]
        fn the_one_pass_parser_agrees_with_the_value_parser(
            fields in proptest::collection::vec((
                prop::sample::select(vec!["name", "artist", "band", "album", "year", "rank", "ranked", "vote_id", "voter", "colour"]),
                prop::sample::select(vec![r#""Alux Nahual""#, r#""alux  nahual ""#, r#""1983""#, "1983", "2.5", r#""x""#,
                                          "null", "true", "[1]", r#"{"a":1}"#, r#""""#, r#""id-7""#]),
            ), 0..9),
            batch in any::<bool>(),
        ) {
            let object = format!("{{{}}}", fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","));
            let body = if batch { format!("[{object},{object}]") } else { object };
            let (new, old) = both(body.as_bytes());
            prop_assert_eq!(new, old, "{}", body);
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
