use super::*;

fn contest() -> Contest {
    Contest {
        id: "final-2026".into(),
        title: "Final".into(),
        roster: vec![
            Entry { band: "Alux Nahual".into(), albums: vec![] },
            Entry { band: "Bohemia Suburbana".into(), albums: vec![] },
            Entry { band: "Viernes Verde".into(), albums: vec![] },
        ],
        opens_at_ms: 1_000,
        closes_at_ms: 2_000,
        votes_per_voter: 1,
        revote: Revote::Refuse,
        voters: Voters::Id,
    }
    .validated()
    .unwrap()
}

fn vote(band: &str, at: i64, voter: Option<&str>) -> Vote {
    let mut v = bandvote_vote::RawVote {
        band: Some(band.into()),
        album: Some("x".into()),
        year: Some("1990".into()),
        rank: Some("1".into()),
        vote_id: None,
        voter: voter.map(str::to_owned),
    }
    .validate(bandvote_vote::Source::Http, at, None)
    .unwrap();
    v.received_at_ms = at;
    v
}

#[test]
fn the_roster_matches_folded_names_and_counts_its_own_spelling() {
    let c = contest();
    assert_eq!(c.roster_band("alux  NAHUAL"), Some("Alux Nahual"));
    assert_eq!(c.roster_band("AluxNahual"), Some("Alux Nahual"));
    assert_eq!(c.roster_band("Maná"), None);
    assert_eq!(c.closest("Alux Nahul"), vec!["Alux Nahual".to_owned()]);
    let r = c.admit(&vote("Bohemia Suburbano", 1_500, Some("v1")), 1_500).unwrap_err();
    assert_eq!((r.code(), r.http_status(), r.field()), ("unknown_band", 422, "band"));
    assert_eq!(r.to_json()["error"]["closest"][0], "Bohemia Suburbana");
}

#[test]
fn the_window_and_the_voter() {
    let c = contest();
    let v = vote("alux nahual", 1_500, Some("v1"));
    assert_eq!(c.admit(&v, 999).unwrap_err().code(), "voting_not_open");
    assert_eq!(c.admit(&v, 2_000).unwrap_err().http_status(), 403);
    assert_eq!(c.admit(&v, 1_999), Ok(()));
    assert_eq!(c.admit(&vote("alux nahual", 1_500, None), 1_500).unwrap_err().code(), "voter_required");
    // A voter is a counter in Redis: ids are bounded (length and charset), like a token's voter.
    for bad in ["x".repeat(65), "emoji-🎸".into(), "a:b".into(), "a.b".into()] {
        let r = c.admit(&vote("alux nahual", 1_500, Some(&bad)), 1_500).unwrap_err();
        assert_eq!((r.code(), r.http_status(), r.field()), ("invalid_voter_id", 422, "voter"), "{bad}");
    }
    assert_eq!(c.admit(&vote("alux nahual", 1_500, Some(&"x".repeat(64))), 1_500), Ok(()));
    // The consumer decides by the time the vote was received, not by now.
    assert_eq!(c.status(&vote("alux nahual", 1_999, Some("v"))), VoteStatus::Counted);
    assert_eq!(c.status(&vote("alux nahual", 2_000, Some("v"))), VoteStatus::Late);
    assert_eq!(c.status(&vote("alux nahual", 999, Some("v"))), VoteStatus::Early);
    assert_eq!(c.status(&vote("maná", 1_500, Some("v"))), VoteStatus::UnknownBand);
}

#[test]
fn bad_definitions_are_refused() {
    let mut c = contest();
    c.roster.push(Entry { band: "VIERNES  verde".into(), albums: vec![] });
    assert!(matches!(c.validated(), Err(DefinitionError::DuplicateBand(..))));
    let mut c = contest();
    c.closes_at_ms = c.opens_at_ms;
    assert!(matches!(c.validated(), Err(DefinitionError::Window { .. })));
    let mut c = contest();
    c.id = "a b".into();
    assert!(matches!(c.validated(), Err(DefinitionError::BadId(_))));
    let json = serde_json::to_string(&contest()).unwrap();
    assert_eq!(serde_json::from_str::<Contest>(&json).unwrap(), contest());
}

#[test]
fn tokens_verify_only_for_their_contest_voter_and_time() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let t = token::issue(secret, "final-2026", "ticket-0001", 100).unwrap();
    assert_eq!(token::verify(secret, "final-2026", &t, 99), Ok("ticket-0001"));
    assert_eq!(token::verify(secret, "final-2026", &t, 100), Err(token::TokenError::Expired));
    assert_eq!(token::verify(secret, "semi-2026", &t, 99), Err(token::TokenError::BadSignature));
    assert_eq!(token::verify(b"other-secret-of-thirty-two-bytes", "final-2026", &t, 99), Err(token::TokenError::BadSignature));
    let forged = t.replacen("ticket-0001", "ticket-0002", 1);
    assert_eq!(token::verify(secret, "final-2026", &forged, 99), Err(token::TokenError::BadSignature));
    let later = t.replacen(".100.", ".999.", 1);
    assert_eq!(token::verify(secret, "final-2026", &later, 99), Err(token::TokenError::BadSignature));
    assert_eq!(token::verify(secret, "final-2026", "nope", 99), Err(token::TokenError::Malformed));
    assert!(token::issue(secret, "c", "has space", 1).is_none());
}

/// No secret, an empty one or a short one signs nothing and verifies nothing:
/// a token made with HMAC("") (what anyone can compute) never passes.
#[test]
fn an_empty_or_short_secret_neither_issues_nor_verifies() {
    use token::{usable_secret, SecretError};
    assert_eq!(usable_secret(None), Err(SecretError::Missing));
    assert_eq!(usable_secret(Some(b"")), Err(SecretError::Missing));
    assert_eq!(usable_secret(Some(b"s3cret")), Err(SecretError::TooShort(6)));
    for weak in [&b""[..], b"s3cret"] {
        assert!(token::issue(weak, "c", "v", 100).is_none());
    }
    // A token forged with the empty key, byte for byte what HMAC("") gives.
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"").unwrap();
    m.update(b"bandvote-voter-token-v1\0c\0v\0100");
    let sig: String = m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let forged = format!("v.100.{sig}");
    assert_eq!(token::verify(b"", "c", &forged, 1), Err(token::TokenError::BadSignature));
}

#[test]
fn the_digest_does_not_depend_on_order() {
    let a = vec![("b".to_owned(), "X".to_owned()), ("a".to_owned(), "Y".to_owned())];
    let b = vec![("a".to_owned(), "Y".to_owned()), ("b".to_owned(), "X".to_owned())];
    assert_eq!(result_digest(a.clone()), result_digest(b));
    assert_ne!(result_digest(a), result_digest(vec![("a".to_owned(), "X".to_owned()), ("b".to_owned(), "Y".to_owned())]));
    assert_eq!(result_digest(vec![]).len(), 64);
}
