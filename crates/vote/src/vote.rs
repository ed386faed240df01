use serde::{Deserialize, Serialize};

use crate::error::{FieldProblem, VoteError};
use crate::limits;

/// Which intake received a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The HTTP intake (the WASI component, under our host or Spin).
    Http,
    /// The gRPC producer.
    Grpc,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// The canonical, validated vote. This is what goes to Kafka, Redis and MongoDB.
///
/// Field order is the JSON field order of the Kafka record value; do not
/// reorder without bumping [`crate::record::SCHEMA`].
/// Deserialising ignores unknown fields: a record of schema v1 with a field
/// added by a newer producer still reads (see [`crate::record::decode_record`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Unique id: the client's vote id or idempotency key, else a UUIDv7.
    pub vote_id: String,
    /// Band name, normalised (trimmed, inner whitespace collapsed).
    pub band: String,
    /// Album name, normalised like `band`.
    pub album: String,
    pub year: u16,
    /// Rank as a number (`"09"` is 9, `"8.5"` is 8.5).
    pub rank: f64,
    pub source: Source,
    /// When the intake received it, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Who cast it, when the client said (`voter` field, `X-Voter` header;
    /// under a token contest the token's voter id, put here by the publisher).
    /// Absent from the record when `None`, so votes without a voter encode
    /// as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter: Option<String>,
    /// The contest it was cast in: stamped by the publisher from the open
    /// contest (`bandvote-contest`), never taken from a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contest: Option<String>,
}

/// Context an intake supplies with a submission.
#[derive(Debug, Clone)]
pub struct Received {
    pub source: Source,
    pub received_at_ms: i64,
    /// The request's `Idempotency-Key`, if any. A single vote's id is the key;
    /// a batch item without an id of its own gets `KEY#<fingerprint of the vote>`
    /// (see [`assemble_batch`]).
    pub idempotency_key: Option<String>,
    /// The request's `X-Voter` header, if any (a `voter` field in the body
    /// must then agree with it).
    pub voter: Option<String>,
}

impl Received {
    pub fn new(source: Source, received_at_ms: i64) -> Self {
        Self { source, received_at_ms, idempotency_key: None, voter: None }
    }

    pub fn with_voter(mut self, voter: Option<String>) -> Self {
        self.voter = voter;
        self
    }

    pub fn with_idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }
}

/// A vote as a client sent it: every value a string, every field optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawVote {
    pub band: Option<String>,
    pub album: Option<String>,
    pub year: Option<String>,
    pub rank: Option<String>,
    pub vote_id: Option<String>,
    /// Who cast it (optional; a contest with a per-voter cap requires it).
    pub voter: Option<String>,
}

impl RawVote {
    /// Validate and normalise. `fallback_id` is used when the vote carries no
    /// `vote_id` of its own; with neither, a UUIDv7 is generated.
    ///
    /// An id of the batch form `KEY#<fingerprint>` ([`assemble_batch`]) is
    /// accepted when the fingerprint is this vote's: an intake that derived it
    /// (the `/grpc` hop) hands it on, and every intake takes it by the same
    /// rule; no client can make it name another vote.
    pub fn validate(self, source: Source, received_at_ms: i64, fallback_id: Option<String>) -> Result<Vote, VoteError> {
        let band = normalise_text("band", self.band)?;
        let album = normalise_text("album", self.album)?;
        let year = parse_year(self.year)?;
        let rank = parse_rank(self.rank)?;
        let voter = self.voter.map(check_voter).transpose()?;
        let mut vote = Vote { vote_id: String::new(), band, album, year, rank, source, received_at_ms, voter, contest: None };
        vote.vote_id = match self.vote_id.or(fallback_id) {
            Some(id) => match id.split_once('#') {
                Some((key, fp)) => {
                    check_vote_id("vote_id", key.to_owned())?;
                    if fp != vote.fingerprint().simple().to_string() {
                        return Err(VoteError::field("vote_id", FieldProblem::BadVoteId));
                    }
                    id
                }
                None => check_vote_id("vote_id", id)?,
            },
            None => generated_id(),
        };
        Ok(vote)
    }
}

/// A single vote's id: its own `vote_id`, else the request's idempotency key.
/// Both given and different is a conflict (422), never a silent override.
pub fn resolve_single_id(raw: &RawVote, key: Option<&str>) -> Result<Option<String>, VoteError> {
    match (raw.vote_id.as_deref(), key) {
        (Some(own), Some(k)) if own != k => Err(VoteError::field("vote_id", FieldProblem::Conflict { with: "Idempotency-Key" })),
        (_, k) => Ok(k.map(str::to_owned)),
    }
}

/// Validate a batch sent under an optional idempotency `key`. An item with a
/// `vote_id` keeps it; one without gets `KEY#<fingerprint>`, where the
/// fingerprint is a UUIDv5 of the normalised vote, so:
/// * ids of different keys never collide, and never equal a client key (`#`
///   is not allowed in those);
/// * retrying only the failed items of a batch gives them the ids they had;
/// * two items with one id (explicit, or identical votes under one key) are
///   refused (422 `duplicate_in_batch`) instead of both being "accepted".
pub fn assemble_batch(
    items: impl IntoIterator<Item = RawVote>,
    key: Option<&str>,
    source: Source,
    received_at_ms: i64,
) -> Result<Vec<Vote>, VoteError> {
    if let Some(k) = key {
        check_vote_id("Idempotency-Key", k.to_owned())?;
    }
    let mut seen = std::collections::HashSet::new();
    let mut votes = Vec::new();
    for (i, raw) in items.into_iter().enumerate() {
        let own_id = raw.vote_id.is_some();
        let mut vote = raw.validate(source, received_at_ms, None).map_err(|e| e.at_index(i))?;
        if let (false, Some(k)) = (own_id, key) {
            vote.vote_id = format!("{k}#{}", vote.fingerprint().simple());
        }
        if !seen.insert(vote.vote_id.clone()) {
            return Err(VoteError::field("vote_id", FieldProblem::DuplicateInBatch).at_index(i));
        }
        votes.push(vote);
    }
    Ok(votes)
}

impl Vote {
    /// A stable fingerprint of what the vote says (band, album, year, rank;
    /// not where or when it came from): a retry has the same one, another
    /// vote under the same id does not.
    pub fn fingerprint(&self) -> uuid::Uuid {
        const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6261_6e64_766f_7465_2d62_6174_6368_0001);
        let mut canonical = format!("{}\u{0}{}\u{0}{}\u{0}{}", self.band, self.album, self.year, self.rank);
        if let Some(voter) = &self.voter {
            canonical.push('\u{0}');
            canonical.push_str(voter);
        }
        uuid::Uuid::new_v5(&NAMESPACE, canonical.as_bytes())
    }

    /// Check a vote that arrived already structured (over the component's WIT
    /// interface, from the REST bridge or from Kafka): it must be exactly what
    /// [`RawVote::validate`] would have produced.
    pub fn check(&self) -> Result<(), VoteError> {
        check_stored_id(&self.vote_id)?;
        for (field, text) in [("band", &self.band), ("album", &self.album)] {
            if normalise_text(field, Some(text.clone()))? != *text {
                return Err(VoteError::field(field, FieldProblem::WrongType { expected: "normalised text" }));
            }
        }
        if let Some(voter) = &self.voter
            && check_voter(voter.clone())? != *voter
        {
            return Err(VoteError::field("voter", FieldProblem::WrongType { expected: "normalised text" }));
        }
        if let Some(contest) = &self.contest {
            check_vote_id("contest", contest.clone())?;
        }
        if !limits::YEAR_RANGE.contains(&self.year) {
            return Err(VoteError::field("year", FieldProblem::NotAYear));
        }
        if !(self.rank.is_finite() && (0.0..=limits::MAX_RANK).contains(&self.rank)) {
            return Err(VoteError::field("rank", FieldProblem::OutOfRange));
        }
        Ok(())
    }
}

/// Invisible characters: Unicode's `Default_Ignorable_Code_Point` (zero-width
/// spaces and joiners, variation selectors, Hangul fillers, U+034F, tags, ...)
/// and every format character (category Cf: bidi controls such as U+202E, the
/// BOM, prepended marks). They would make one band two keys, or reverse what
/// a dashboard shows. Both properties come from ICU4X's data, not a hand list.
fn is_invisible(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format
}

/// Characters that render as a blank but are neither whitespace nor
/// Default_Ignorable nor format characters, so the properties above miss
/// them: a name holding one would look like another ("Maná⠀" beside "Maná").
/// Refused anywhere in a name (a band's name never needs a blank glyph; a
/// space is a space). U+2800 BRAILLE PATTERN BLANK (So), U+1D159 MUSICAL
/// SYMBOL NULL NOTEHEAD (So), U+16FE4 KHITAN SMALL SCRIPT FILLER.
pub const BLANK_RENDERING: [char; 3] = ['\u{2800}', '\u{1D159}', '\u{16FE4}'];

/// Normalise a name as votes' band and album are (for rosters and other
/// names compared with votes).
pub fn normalise_name(field: &'static str, value: &str) -> Result<String, VoteError> {
    normalise_text(field, Some(value.to_owned()))
}

/// Trim, collapse inner whitespace runs to one space, NFC-normalise (so "é"
/// typed either way is one band), refuse control and format characters.
fn normalise_text(field: &'static str, value: Option<String>) -> Result<String, VoteError> {
    let value = value.ok_or_else(|| VoteError::field(field, FieldProblem::Missing))?;
    if is_plain_ascii(&value) {
        // Already what `normalise_unicode` makes of it (ASCII is NFC; no
        // printable ASCII character is a control, format or blank-rendering one).
        return within_text_limit(field, value);
    }
    normalise_unicode(field, value)
}

/// `normalise_text`'s steps for any text.
fn normalise_unicode(field: &'static str, value: String) -> Result<String, VoteError> {
    use unicode_normalization::UnicodeNormalization as _;
    if value.chars().any(|c| (c.is_control() && !c.is_whitespace()) || is_invisible(c)) {
        return Err(VoteError::field(field, FieldProblem::ControlCharacter));
    }
    if value.chars().any(|c| BLANK_RENDERING.contains(&c)) {
        return Err(VoteError::field(field, FieldProblem::BlankCharacter));
    }
    let normalised = value.split_whitespace().collect::<Vec<_>>().join(" ").nfc().collect::<String>();
    if normalised.is_empty() {
        return Err(VoteError::field(field, FieldProblem::Empty));
    }
    within_text_limit(field, normalised)
}

/// A normalised band or album name, if it is at most `MAX_TEXT_CHARS` characters.
fn within_text_limit(field: &'static str, text: String) -> Result<String, VoteError> {
    if text.chars().count() > limits::MAX_TEXT_CHARS {
        return Err(VoteError::field(field, FieldProblem::TooLong { max: limits::MAX_TEXT_CHARS }));
    }
    Ok(text)
}

/// Non-empty printable ASCII (U+0020..=U+007E) with no space at either end
/// and none doubled: `normalise_text`'s fixed point, checked in one pass
/// (most names are; the Unicode steps cost the wasm intake ~5 % of a request).
fn is_plain_ascii(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b[0] != b' '
        && b[b.len() - 1] != b' '
        && b.iter().all(|c| (b' '..=b'~').contains(c))
        && !b.windows(2).any(|w| w == b"  ")
}

fn parse_year(value: Option<String>) -> Result<u16, VoteError> {
    let value = value.ok_or_else(|| VoteError::field("year", FieldProblem::Missing))?;
    let v = value.trim();
    if v.is_empty() {
        return Err(VoteError::field("year", FieldProblem::Empty));
    }
    if v.len() != 4 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VoteError::field("year", FieldProblem::NotAYear));
    }
    let year: u16 = v.parse().map_err(|_| VoteError::field("year", FieldProblem::NotAYear))?;
    if !limits::YEAR_RANGE.contains(&year) {
        return Err(VoteError::field("year", FieldProblem::NotAYear));
    }
    Ok(year)
}

/// Plain decimal only: `9`, `09`, `8.5`. No sign, exponent, `inf` or `NaN`.
fn parse_rank(value: Option<String>) -> Result<f64, VoteError> {
    let value = value.ok_or_else(|| VoteError::field("rank", FieldProblem::Missing))?;
    let v = value.trim();
    if v.is_empty() {
        return Err(VoteError::field("rank", FieldProblem::Empty));
    }
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 12 || frac.len() > 6 || !digits(int) || !digits(frac) || v.ends_with('.') {
        return Err(VoteError::field("rank", FieldProblem::NotANumber));
    }
    let rank: f64 = v.parse().map_err(|_| VoteError::field("rank", FieldProblem::NotANumber))?;
    if rank > limits::MAX_RANK {
        return Err(VoteError::field("rank", FieldProblem::OutOfRange));
    }
    Ok(rank)
}

/// A stored id: a client id, or a key + `#` + fingerprint ([`assemble_batch`]).
fn check_stored_id(id: &str) -> Result<(), VoteError> {
    let (client, derived) = match id.split_once('#') {
        Some((k, fp)) => (k, Some(fp)),
        None => (id, None),
    };
    let derived_ok = derived.is_none_or(|fp| fp.len() == 32 && fp.bytes().all(|b| b.is_ascii_hexdigit()));
    check_vote_id("vote_id", client.to_owned()).and_then(|_| if derived_ok { Ok(()) } else { Err(VoteError::field("vote_id", FieldProblem::BadVoteId)) })
}

/// The 12 `rand_a` bits of every vote id an intake generates (a UUIDv7 with
/// these bits fixed instead of random: still a valid UUIDv7, time-ordered).
const GENERATED_TAG: u16 = 0xB07;

/// A new vote id for a vote that came without one: a UUIDv7 tagged as
/// generated here ([`is_generated_id`]).
pub fn generated_id() -> String {
    let mut bytes = *uuid::Uuid::now_v7().as_bytes();
    bytes[6] = 0x70 | ((GENERATED_TAG >> 8) as u8);
    bytes[7] = (GENERATED_TAG & 0xFF) as u8;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// Whether an intake generated this id ([`generated_id`]): no other vote can
/// ever carry it, so it cannot collide and needs no idempotency-key claim.
/// A client key that happens to be a UUIDv7 with the same 12 bits (1 in 4,096
/// random ones) is taken for generated too: it is then not claimed, which
/// costs only the 409 on its reuse (the consumer still counts an id once).
pub fn is_generated_id(id: &str) -> bool {
    id.len() == 36
        && uuid::Uuid::try_parse(id).is_ok_and(|u| {
            let b = u.as_bytes();
            u.get_version_num() == 7 && b[6] & 0x0F == (GENERATED_TAG >> 8) as u8 && b[7] == (GENERATED_TAG & 0xFF) as u8
        })
}

/// A voter id or voter token: trimmed, 1 to [`limits::MAX_VOTER_CHARS`]
/// characters, no whitespace inside, no control or invisible characters.
fn check_voter(value: String) -> Result<String, VoteError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(VoteError::field("voter", FieldProblem::Empty));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace() || is_invisible(c)) {
        return Err(VoteError::field("voter", FieldProblem::ControlCharacter));
    }
    if v.chars().count() > limits::MAX_VOTER_CHARS {
        return Err(VoteError::field("voter", FieldProblem::TooLong { max: limits::MAX_VOTER_CHARS }));
    }
    Ok(v.to_owned())
}

pub(crate) fn check_vote_id(field: &'static str, id: String) -> Result<String, VoteError> {
    let ok = !id.is_empty()
        && id.len() <= limits::MAX_VOTE_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(id) } else { Err(VoteError::field(field, FieldProblem::BadVoteId)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(band: &str, album: &str, year: &str, rank: &str) -> RawVote {
        RawVote {
            band: Some(band.into()),
            album: Some(album.into()),
            year: Some(year.into()),
            rank: Some(rank.into()),
            vote_id: None,
            voter: None,
        }
    }

    fn problem(r: Result<Vote, VoteError>) -> (String, FieldProblem) {
        match r.unwrap_err() {
            VoteError::Field { field, problem } => (field, problem),
            e => panic!("not a field error: {e}"),
        }
    }

    /// The ASCII fast path answers what the full steps do, for every string
    /// of up to 4 characters over an alphabet of edge cases, and is taken.
    #[test]
    fn the_ascii_fast_path_agrees_with_the_full_steps() {
        let alphabet = [' ', 'a', '~', '\t', '\n', '\r', '\0', '\u{1f}', '\u{7f}', '\u{85}', '\u{a0}', 'é', '\u{200b}', '\u{2800}'];
        let mut strings = vec![String::new()];
        let mut last = strings.clone();
        for _ in 0..4 {
            last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            strings.extend(last.iter().cloned());
        }
        let mut fast = 0;
        for s in &strings {
            fast += usize::from(is_plain_ascii(s));
            assert_eq!(normalise_text("band", Some(s.clone())), normalise_unicode("band", s.clone()), "{s:?}");
        }
        assert_eq!(fast, 50, "strings over ' ', 'a', '~' with no space at an end or doubled take the fast path");
        for (s, plain) in [("Alux Nahual", true), (" Alux", false), ("Alux  Nahual", false), ("Alux\u{7f}", false), ("Maná", false)] {
            assert_eq!(is_plain_ascii(s), plain, "{s:?}");
        }
        let too_long = Err(VoteError::field("band", FieldProblem::TooLong { max: limits::MAX_TEXT_CHARS }));
        let long = "a".repeat(limits::MAX_TEXT_CHARS + 1);
        assert!(is_plain_ascii(&long));
        assert_eq!(normalise_text("band", Some(long.clone())), too_long);
        assert_eq!(normalise_unicode("band", long), too_long);
        let max = "a".repeat(limits::MAX_TEXT_CHARS);
        assert_eq!(normalise_text("band", Some(max.clone())), Ok(max));
    }

    #[test]
    fn normalises_text_and_numbers() {
        let v = raw("  Alux   Nahual ", "Alux\tNahual", " 1983", "09").validate(Source::Http, 7, None).unwrap();
        assert_eq!(v.band, "Alux Nahual");
        assert_eq!(v.album, "Alux Nahual");
        assert_eq!(v.year, 1983);
        assert_eq!(v.rank, 9.0);
        assert_eq!(v.received_at_ms, 7);
        assert_eq!(uuid::Uuid::parse_str(&v.vote_id).unwrap().get_version_num(), 7);
        v.check().unwrap();
        let v = raw("a", "b", "2000", "8.5").validate(Source::Grpc, 0, Some("k-1".into())).unwrap();
        assert_eq!((v.rank, v.vote_id.as_str()), (8.5, "k-1"));
    }

    #[test]
    fn names_field_and_problem() {
        let cases = [
            (raw("", "b", "2000", "1"), "band", FieldProblem::Empty),
            (raw("a", "b\u{7}", "2000", "1"), "album", FieldProblem::ControlCharacter),
            (raw("Soda\u{200B}Stereo", "b", "2000", "1"), "band", FieldProblem::ControlCharacter),
            (raw("a", "\u{202E}oediv", "2000", "1"), "album", FieldProblem::ControlCharacter),
            (raw("Maná\u{2800}", "b", "2000", "1"), "band", FieldProblem::BlankCharacter),
            (raw("\u{2800}", "b", "2000", "1"), "band", FieldProblem::BlankCharacter),
            (raw("a", "Sue\u{2800}ños", "2000", "1"), "album", FieldProblem::BlankCharacter),
            (raw("a", &"x".repeat(201), "2000", "1"), "album", FieldProblem::TooLong { max: 200 }),
            (raw("a", "b", "83", "1"), "year", FieldProblem::NotAYear),
            (raw("a", "b", "0999", "1"), "year", FieldProblem::NotAYear),
            (raw("a", "b", "2000", "-1"), "rank", FieldProblem::NotANumber),
            (raw("a", "b", "2000", "1e3"), "rank", FieldProblem::NotANumber),
            (raw("a", "b", "2000", "NaN"), "rank", FieldProblem::NotANumber),
            (raw("a", "b", "2000", "8."), "rank", FieldProblem::NotANumber),
            (raw("a", "b", "2000", "100001"), "rank", FieldProblem::OutOfRange),
        ];
        for (r, field, p) in cases {
            assert_eq!(problem(r.validate(Source::Http, 0, None)), (field.to_string(), p));
        }
        let missing = RawVote { band: Some("a".into()), ..Default::default() };
        assert_eq!(problem(missing.validate(Source::Http, 0, None)), ("album".into(), FieldProblem::Missing));
        let bad_id = raw("a", "b", "2000", "1").validate(Source::Http, 0, Some("has space".into()));
        assert_eq!(problem(bad_id), ("vote_id".into(), FieldProblem::BadVoteId));
    }

    /// Ids the intake generates are recognised as such; client keys, derived
    /// batch ids and plain UUIDs are not.
    #[test]
    fn generated_ids_are_told_from_client_keys() {
        let v = raw("a", "b", "2000", "1").validate(Source::Http, 0, None).unwrap();
        assert!(is_generated_id(&v.vote_id), "{}", v.vote_id);
        assert_eq!(uuid::Uuid::parse_str(&v.vote_id).unwrap().get_version_num(), 7);
        v.check().unwrap();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(ids.insert(generated_id()), "unique");
        }
        for client in ["k1", "req-9", &uuid::Uuid::now_v7().to_string(), &format!("req-9#{}", v.fingerprint().simple())] {
            let keyed = raw("a", "b", "2000", "1").validate(Source::Http, 0, Some(client.to_owned())).unwrap();
            assert!(!is_generated_id(&keyed.vote_id) || client.len() == 36, "{client}");
        }
        assert!(!is_generated_id("k1") && !is_generated_id(&uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"x").to_string()));
    }

    /// A batch item's derived id (`KEY#<fingerprint>`) passes validation
    /// again as the vote's own id (the /grpc hop hands it to the producer),
    /// but only on the vote it was derived from.
    #[test]
    fn a_derived_id_validates_only_on_its_own_vote() {
        let items = vec![raw("Caifanes", "El Silencio", "1992", "1"), raw("Maná", "x", "1992", "1")];
        let votes = assemble_batch(items.clone(), Some("req-1"), Source::Http, 0).unwrap();
        for (item, vote) in items.iter().zip(&votes) {
            let again = RawVote { vote_id: Some(vote.vote_id.clone()), ..item.clone() }.validate(Source::Grpc, 0, None).unwrap();
            assert_eq!(again.vote_id, vote.vote_id);
            again.check().unwrap();
        }
        let forged = RawVote { vote_id: Some(votes[0].vote_id.clone()), ..items[1].clone() }.validate(Source::Grpc, 0, None);
        assert_eq!(problem(forged), ("vote_id".into(), FieldProblem::BadVoteId));
        let bad_key = RawVote { vote_id: Some(format!("a b#{}", votes[0].fingerprint().simple())), ..items[0].clone() }.validate(Source::Grpc, 0, None);
        assert_eq!(problem(bad_key), ("vote_id".into(), FieldProblem::BadVoteId));
    }

    /// Every Default_Ignorable_Code_Point (the whole property, U+0000..U+10FFFF)
    /// is refused inside a name; the ones a hand list once missed are named.
    #[test]
    fn every_default_ignorable_code_point_is_refused() {
        use icu_properties::props::DefaultIgnorableCodePoint;
        use icu_properties::CodePointSetData;
        let named = [0x034F, 0x115F, 0x1160, 0x3164, 0xFE00, 0xFE0F, 0x180B, 0x180C, 0x180D, 0x2060, 0x2064, 0xFFA0, 0xE0100];
        let set = CodePointSetData::new::<DefaultIgnorableCodePoint>();
        let all: Vec<char> = (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|c| set.contains(*c)).collect();
        assert!(all.len() > 4000, "the property's data is there ({} code points)", all.len());
        for n in named {
            assert!(all.contains(&char::from_u32(n).unwrap()), "U+{n:04X} is Default_Ignorable");
        }
        for c in all {
            let r = raw(&format!("Soda{c}Stereo"), "b", "2000", "1").validate(Source::Http, 0, None);
            assert_eq!(problem(r), ("band".into(), FieldProblem::ControlCharacter), "U+{:04X}", c as u32);
        }
        for fine in ["Café Tacvba", "Maná", "방탄소년단", "Los Prisioneros 🎸", "Sigur Rós", "Ñu"] {
            raw(fine, fine, "2000", "1").validate(Source::Http, 0, None).unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
    }

    #[test]
    fn check_refuses_unnormalised_votes() {
        let mut v = raw("a", "b", "2000", "1").validate(Source::Http, 0, None).unwrap();
        v.band = " a".into();
        assert!(v.check().is_err());
        v.band = "a".into();
        v.rank = f64::NAN;
        assert!(v.check().is_err());
    }

    #[test]
    fn one_band_is_one_key_however_it_was_typed() {
        let composed = raw("Caf\u{e9} Tacvba", "Re", "1994", "1").validate(Source::Http, 0, None).unwrap();
        let decomposed = raw("Cafe\u{301} Tacvba", "Re", "1994", "1").validate(Source::Http, 0, None).unwrap();
        assert_eq!(composed.band, decomposed.band);
        decomposed.check().unwrap();
    }
}
