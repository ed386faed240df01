use std::fmt;

/// What is wrong with one field of a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// The field is absent (or an empty protobuf string).
    Missing,
    /// The field is present but blank after trimming.
    Empty,
    /// Longer than the limit, in characters.
    TooLong { max: usize },
    /// Contains a control character.
    ControlCharacter,
    /// Contains a character that renders blank but is neither whitespace nor
    /// invisible by Unicode's properties ([`crate::BLANK_RENDERING`], e.g. U+2800).
    BlankCharacter,
    /// Not a four-digit year in [`crate::limits::YEAR_RANGE`].
    NotAYear,
    /// Not a plain decimal number such as `9`, `09` or `8.5`.
    NotANumber,
    /// A number outside the accepted range.
    OutOfRange,
    /// A field this schema does not know.
    Unknown,
    /// The JSON value has the wrong type.
    WrongType { expected: &'static str },
    /// Two aliases (`name`/`artist`, `rank`/`ranked`) disagree.
    Conflict { with: &'static str },
    /// A client vote id / idempotency key with bad characters or length.
    BadVoteId,
    /// The same vote id twice in one batch.
    DuplicateInBatch,
}

impl FieldProblem {
    /// Stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Empty => "empty",
            Self::TooLong { .. } => "too_long",
            Self::ControlCharacter => "control_character",
            Self::BlankCharacter => "blank_character",
            Self::NotAYear => "not_a_year",
            Self::NotANumber => "not_a_number",
            Self::OutOfRange => "out_of_range",
            Self::Unknown => "unknown_field",
            Self::WrongType { .. } => "wrong_type",
            Self::Conflict { .. } => "conflict",
            Self::BadVoteId => "bad_vote_id",
            Self::DuplicateInBatch => "duplicate_in_batch",
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("is missing"),
            Self::Empty => f.write_str("is empty"),
            Self::TooLong { max } => write!(f, "is longer than {max} characters"),
            Self::ControlCharacter => f.write_str("contains a control or invisible format character (e.g. U+200B, U+202E)"),
            Self::BlankCharacter => f.write_str("contains a character that shows as a blank (e.g. U+2800 BRAILLE PATTERN BLANK): use a plain space"),
            Self::NotAYear => {
                let r = crate::limits::YEAR_RANGE;
                write!(f, "is not a year (expected 4 digits, {}..={})", r.start(), r.end())
            }
            Self::NotANumber => f.write_str("is not a number (expected digits, e.g. \"9\" or \"8.5\")"),
            Self::OutOfRange => write!(f, "is out of range (0..={})", crate::limits::MAX_RANK),
            Self::Unknown => f.write_str("is not a known field (expected name|artist, album, year, rank|ranked, vote_id)"),
            Self::WrongType { expected } => write!(f, "has the wrong type (expected {expected})"),
            Self::Conflict { with } => write!(f, "disagrees with `{with}`"),
            Self::DuplicateInBatch => write!(f, "appears twice in the batch (give each vote its own vote_id)"),
            Self::BadVoteId => write!(
                f,
                "must be 1..={} characters of A-Z a-z 0-9 . _ : -",
                crate::limits::MAX_VOTE_ID_LEN
            ),
        }
    }
}

/// Why a submission was refused. Every variant maps to one HTTP status and one
/// gRPC code, and renders as a JSON body naming the field and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VoteError {
    #[error("body is {size} bytes, larger than the {limit}-byte limit")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("content type `{0}` is not supported (send application/json)")]
    UnsupportedContentType(String),
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("body must be a JSON object (a vote) or an array of objects (a batch)")]
    NotAnObject,
    #[error("batch is empty")]
    EmptyBatch,
    #[error("batch has {len} votes, more than the limit of {limit}")]
    BatchTooLarge { len: usize, limit: usize },
    #[error("field `{field}` {problem}")]
    Field { field: String, problem: FieldProblem },
}

impl VoteError {
    pub(crate) fn field(field: impl Into<String>, problem: FieldProblem) -> Self {
        Self::Field { field: field.into(), problem }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BodyTooLarge { .. } | Self::BatchTooLarge { .. } => 413,
            Self::UnsupportedContentType(_) => 415,
            Self::MalformedJson(_) => 400,
            Self::NotAnObject | Self::EmptyBatch | Self::Field { .. } => 422,
        }
    }

    /// Stable machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnsupportedContentType(_) => "unsupported_content_type",
            Self::MalformedJson(_) => "malformed_json",
            Self::NotAnObject => "not_an_object",
            Self::EmptyBatch => "empty_batch",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::Field { .. } => "invalid_field",
        }
    }

    /// Prefix the field path with a batch index: `year` becomes `[3].year`.
    pub(crate) fn at_index(self, index: usize) -> Self {
        match self {
            Self::Field { field, problem } => Self::Field { field: format!("[{index}].{field}"), problem },
            other => other,
        }
    }

    /// The JSON error body every intake returns:
    /// `{"error":{"status":422,"code":"invalid_field","field":"year","problem":"not_a_year","message":"..."}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "status": self.http_status(),
            "code": self.code(),
            "message": self.to_string(),
        });
        if let Self::Field { field, problem } = self {
            body["field"] = field.clone().into();
            body["problem"] = problem.code().into();
        }
        serde_json::json!({ "error": body })
    }
}
