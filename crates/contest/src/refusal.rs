/// Why a contest rule refused a vote at an intake. Final: a retry of the
/// same vote gets the same answer (until the contest changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("band {band:?} is not on the contest's roster")]
    UnknownBand { band: String, closest: Vec<String> },
    #[error("voting is not open yet")]
    NotOpen { opens_at_ms: i64 },
    #[error("voting is closed")]
    Closed { closes_at_ms: i64 },
    #[error("this contest needs a voter: send a `voter` field or an `X-Voter` header")]
    VoterRequired,
    #[error("voter has cast the {cap} vote(s) this contest allows")]
    LimitReached { cap: u32 },
    #[error("voter token refused: {0}")]
    InvalidToken(String),
    #[error("voter id must be 1 to 64 of A-Z a-z 0-9 _ - (this contest keeps a count per voter)")]
    InvalidVoterId,
}

impl Refusal {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownBand { .. } => "unknown_band",
            Self::NotOpen { .. } => "voting_not_open",
            Self::Closed { .. } => "voting_closed",
            Self::VoterRequired => "voter_required",
            Self::LimitReached { .. } => "vote_limit_reached",
            Self::InvalidToken(_) => "invalid_voter_token",
            Self::InvalidVoterId => "invalid_voter_id",
        }
    }

    /// The HTTP status every intake answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownBand { .. } | Self::VoterRequired | Self::InvalidVoterId => 422,
            Self::NotOpen { .. } | Self::Closed { .. } => 403,
            Self::LimitReached { .. } => 409,
            Self::InvalidToken(_) => 401,
        }
    }

    /// The field the refusal is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::UnknownBand { .. } => "band",
            Self::NotOpen { .. } | Self::Closed { .. } => "received_at",
            Self::VoterRequired | Self::LimitReached { .. } | Self::InvalidToken(_) | Self::InvalidVoterId => "voter",
        }
    }

    /// Details beyond the message, as a JSON object (merged into the error body).
    pub fn details(&self) -> serde_json::Value {
        match self {
            Self::UnknownBand { band, closest } => serde_json::json!({ "band": band, "closest": closest }),
            Self::NotOpen { opens_at_ms } => serde_json::json!({ "opens_at_ms": opens_at_ms }),
            Self::Closed { closes_at_ms } => serde_json::json!({ "closes_at_ms": closes_at_ms }),
            Self::LimitReached { cap } => serde_json::json!({ "votes_per_voter": cap }),
            Self::VoterRequired | Self::InvalidToken(_) | Self::InvalidVoterId => serde_json::json!({}),
        }
    }

    /// The JSON error body intakes answer with:
    /// `{"error":{"status","code","field","message",…details}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "status": self.http_status(),
            "code": self.code(),
            "field": self.field(),
            "message": self.to_string(),
        });
        if let (Some(e), serde_json::Value::Object(d)) = (error.as_object_mut(), self.details()) {
            e.extend(d);
        }
        serde_json::json!({ "error": error })
    }
}
