//! Fuzz the intake's parser and validator: any bytes, with any content type and
//! idempotency key, either parse into votes that pass `Vote::check` and survive
//! the Kafka record round trip, or give a typed error with a 4xx status.
#![no_main]

use bandvote_vote::{parse_body, record, Received, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(2));
    let content_type = match head.first().copied().unwrap_or(0) % 4 {
        0 => None,
        1 => Some("application/json"),
        2 => Some("application/x-www-form-urlencoded"),
        _ => Some("text/xml"),
    };
    let key = (head.get(1).copied().unwrap_or(0) % 3 == 0).then(|| "fuzz-key".to_string());
    match parse_body(content_type, body, &Received::new(Source::Http, 0).with_idempotency_key(key)) {
        Ok(s) => {
            assert!(!s.votes.is_empty());
            for v in &s.votes {
                v.check().expect("parsed votes are canonical");
                assert_eq!(&record::decode(&record::encode(v).value).expect("round trip"), v);
            }
        }
        Err(e) => assert!(matches!(e.http_status(), 400 | 413 | 415 | 422)),
    }
});
