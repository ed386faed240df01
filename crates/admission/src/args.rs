//! Admission's command-line flags, shared by every intake binary.

use std::time::Duration;

use bandvote_store::{BandNames, ContestStore, KeyClaims, PublishedThrough};

use crate::{Admission, Publish, PublishError};

/// Admission flags (each with an environment variable); flatten into an intake's config.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionArgs {
    /// Redis of the intakes: idempotency keys (409 when a key is reused for a
    /// different vote; a retry answered as the first attempt), the band-name
    /// cap and the current contest. Unset: none of them (no contest rules;
    /// the consumer still counts an id once).
    #[arg(long, env = "BANDVOTE_IDEMPOTENCY_REDIS_URL")]
    pub idempotency_redis_url: Option<String>,
    /// Seconds an idempotency key keeps standing for its vote.
    #[arg(long, env = "BANDVOTE_IDEMPOTENCY_WINDOW_SECS", default_value_t = 300)]
    pub idempotency_window_secs: u64,
    /// Most distinct band names counted (kept in the same Redis as the keys);
    /// a vote for a new name past it is refused (422 / INVALID_ARGUMENT). 0: no cap.
    #[arg(long, env = "BANDVOTE_MAX_BANDS", default_value_t = 1_000)]
    pub max_bands: usize,
    /// Most distinct album names counted (the same Redis); a vote with a new
    /// album past it is refused (422 / INVALID_ARGUMENT). 0: no cap.
    #[arg(long, env = "BANDVOTE_MAX_ALBUMS", default_value_t = 10_000)]
    pub max_albums: usize,
    /// How often the current contest (in the same Redis) is read, in ms: a
    /// contest an operator creates, opens or closes applies within this.
    #[arg(long, env = "BANDVOTE_CONTEST_POLL_MS", default_value_t = 1_000)]
    pub contest_poll_ms: u64,
    /// Redis unreachable this long (ms): the current contest is no longer
    /// known and every vote is refused with 503 until it is read again.
    #[arg(long, env = "BANDVOTE_CONTEST_STALE_MS", default_value_t = 30_000)]
    pub contest_stale_ms: u64,
    /// Secret voter tokens are signed with (contests with `voters = token`),
    /// at least 32 bytes. Unset, empty or shorter: while a token contest is
    /// current every vote is refused (503) and /readyz says why.
    #[arg(long, env = "BANDVOTE_CONTEST_SECRET", hide_env_values = true)]
    pub contest_secret: Option<String>,
}

impl AdmissionArgs {
    /// Admission in front of `inner` as these flags describe it. Call inside
    /// a Tokio runtime (the contest is watched by a task).
    pub fn connect<P: Publish>(&self, inner: P) -> Result<Admission<P>, PublishError> {
        let admission = Admission::new(inner);
        let Some(url) = &self.idempotency_redis_url else { return Ok(admission) };
        let config = |what: &str, e: &dyn std::fmt::Display| PublishError::Config(format!("{what} redis {url}: {e}"));
        let window = Duration::from_secs(self.idempotency_window_secs.max(1));
        let claims = KeyClaims::new(url, "", window).map_err(|e| config("idempotency", &e))?;
        let contests = ContestStore::new(url, "").map_err(|e| config("contest", &e))?;
        let watch = contests.watch(Duration::from_millis(self.contest_poll_ms.max(50)), Duration::from_millis(self.contest_stale_ms.max(self.contest_poll_ms)));
        let reports = PublishedThrough::new(url, "").map_err(|e| config("published-through", &e))?;
        let mut admission = admission
            .with_contest(watch, self.contest_secret.as_deref().map(str::as_bytes))
            .with_key_claims(claims)
            .with_published_through(reports, Duration::from_millis(self.contest_poll_ms.max(50)));
        if self.max_bands > 0 {
            admission = admission.with_band_cap(BandNames::new(url, "", self.max_bands).map_err(|e| config("band names", &e))?);
        }
        if self.max_albums > 0 {
            admission = admission.with_album_cap(BandNames::albums(url, "", self.max_albums).map_err(|e| config("album names", &e))?);
        }
        Ok(admission)
    }
}
