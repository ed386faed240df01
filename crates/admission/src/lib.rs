//! Admission: what every intake (the wasm host, the gRPC service, the REST
//! bridge, and so the `/grpc` hop and Spin) decides about a vote before it
//! goes to Kafka, in one place and one order:
//!
//! 1. **the contest snapshot** ([`steps::known_contest`]): not known → 503;
//! 2. **voter identity** ([`steps::identify`]): a token verified with the
//!    intake's secret (none or a short one → 503), its voter id kept;
//! 3. **the contest gate** ([`steps::gate`]): window by the intake's clock,
//!    roster, voter required; the intake's stamp (received time, contest,
//!    voter) replaces whatever the body said;
//! 4. **idempotency** ([`KeyClaims`]): a retry of a vote admitted before is
//!    answered and published as it was then (its stamp), before any rule is
//!    judged again; a key standing for another vote → 409;
//! 5. **name bounds** ([`BandNames`]): a new band or album past its cap → 422;
//! 6. **publish** (`bandvote-kafka`'s `VotePublisher`, any [`Publish`]).
//!
//! Steps 2–3 are pure (the verdict, computed first), step 4 is one Redis
//! round trip that both looks the key up and claims it with the verdict's
//! stamp, so a refused vote claims nothing and a retry is recognised before
//! its verdict counts.
//!
//! Every call holds its votes in [`InFlight`] until it answers, and an
//! intake with Redis reports how far it has published
//! ([`Admission::with_published_through`]): `contest certify` waits for it.

mod args;
mod error;
pub mod in_flight;
mod metrics;
pub mod steps;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bandvote_contest::token::SecretError;
use bandvote_contest::Voters;
use bandvote_store::{BandNames, Claim, ContestWatch, Current, KeyClaims, PublishedThrough, Stamp};
use bandvote_vote::Vote;

pub use args::AdmissionArgs;
pub use bandvote_kafka::Ack;
pub use error::{NameRefusal, Publish, PublishError};
pub use in_flight::InFlight;

/// The admission pipeline in front of a publisher `P`. Cheap to clone.
pub struct Admission<P> {
    inner: Arc<P>,
    contest: Option<ContestWatch>,
    secret: Result<Arc<[u8]>, SecretError>,
    claims: Option<KeyClaims>,
    bands: Option<BandCap>,
    albums: Option<BandCap>,
    clock: fn() -> i64,
    in_flight: Arc<InFlight>,
    metrics: Arc<metrics::Counts>,
}

impl<P> Clone for Admission<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            contest: self.contest.clone(),
            secret: self.secret.clone(),
            claims: self.claims.clone(),
            bands: self.bands.clone(),
            albums: self.albums.clone(),
            clock: self.clock,
            in_flight: self.in_flight.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// A name cap (bands or albums) and the names this process saw admitted.
#[derive(Clone)]
struct BandCap {
    names: BandNames,
    known: Arc<Mutex<HashSet<String>>>,
}

/// What admission decided for one vote.
#[derive(Debug)]
enum Decision {
    /// Publish this (stamped) vote; `claimed`: this call took its key.
    Publish { vote: Vote, claimed: bool },
    Refuse(PublishError),
}

/// This intake in the published-through reports: `<host>:<pid>`.
fn intake_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "intake".into());
    format!("{host}:{}", std::process::id())
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl<P: Publish> Admission<P> {
    /// Admission with no rules yet: votes are stamped by the intake (its
    /// clock; no contest) and published. Add the steps with the `with_*` methods.
    pub fn new(inner: P) -> Self {
        Self {
            inner: Arc::new(inner),
            contest: None,
            secret: Err(SecretError::Missing),
            claims: None,
            bands: None,
            albums: None,
            clock: now_ms,
            in_flight: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Apply the current contest's rules, verifying voter tokens with
    /// `secret` (checked here: none, empty or short → every vote of a token
    /// contest is refused with 503, and readiness says why).
    pub fn with_contest(mut self, watch: ContestWatch, secret: Option<&[u8]>) -> Self {
        self.secret = bandvote_contest::token::usable_secret(secret).map(Arc::from);
        if let Err(problem) = &self.secret {
            tracing::warn!(%problem, "voter tokens cannot be verified: while a `voters = token` contest is current, every vote is refused (503)");
        }
        self.contest = Some(watch);
        self
    }

    /// Claim idempotency keys ([`KeyClaims`]): 409 for a key reused for a
    /// different vote, the first answer again for a retry. If Redis cannot
    /// be reached the vote goes on unchecked (the consumer still counts an
    /// id once) and `idempotency_unchecked_total` counts it.
    pub fn with_key_claims(mut self, claims: KeyClaims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// Bound the distinct band names ([`BandNames`]); a roster replaces the cap.
    pub fn with_band_cap(mut self, names: BandNames) -> Self {
        self.bands = Some(BandCap { names, known: Arc::default() });
        self
    }

    /// Bound the distinct album names the same way (`albums:known`; a roster does not bound albums).
    pub fn with_album_cap(mut self, names: BandNames) -> Self {
        self.albums = Some(BandCap { names, known: Arc::default() });
        self
    }

    /// Judge by `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// Report to `reports`, every `every`, how far this intake has
    /// published (every vote taken up to that time answered); `contest
    /// certify` waits until every live intake is past the close. The task
    /// ends with the last clone of this admission. Call inside a Tokio runtime.
    pub fn with_published_through(self, reports: PublishedThrough, every: Duration) -> Self {
        let in_flight = Arc::downgrade(&self.in_flight);
        let clock = self.clock;
        let intake = intake_name();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(through) = in_flight.upgrade().map(|f| f.through(clock)) else { return };
                if let Err(e) = reports.report(&intake, through, clock()).await {
                    tracing::debug!(error = %e, "published-through not reported (certify waits for this intake until it is, or until it is silent long enough)");
                }
            }
        });
        self
    }

    /// How far this intake has published: every vote taken at or before this
    /// time (ms since the epoch, its clock) has been answered.
    pub fn published_through(&self) -> i64 {
        self.in_flight.through(self.clock)
    }

    /// The publisher behind admission.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The rules that apply now.
    fn current(&self) -> Current {
        self.contest.as_ref().map_or(Current::NoContest, ContestWatch::current)
    }

    /// Admission's part of `/readyz`: `Err` while every vote would be refused
    /// with 503 (the contest not known; a token contest without a usable secret).
    pub fn readiness(&self) -> Result<String, String> {
        match &self.current() {
            Current::Unknown => Err("current contest not known (Redis unreachable, or it lost the record until the consumer restores it): votes are refused with 503".into()),
            Current::Contest(c) if c.voters == Voters::Token => match &self.secret {
                Err(problem) => Err(format!("contest {:?} takes voter tokens but {problem}: votes are refused with 503", c.id)),
                Ok(_) => Ok(format!("contest {}", c.id)),
            },
            Current::Contest(c) => Ok(format!("contest {}", c.id)),
            Current::NoContest => Ok("no contest".into()),
        }
    }

    /// Export `<prefix>_idempotency_conflicts_total`,
    /// `<prefix>_idempotency_unchecked_total`, `<prefix>_idempotency_retries_total`,
    /// `<prefix>_bands_refused_total`, `<prefix>_albums_refused_total`,
    /// `<prefix>_contest_unknown_total` and
    /// `<prefix>_contest_known`.
    pub fn register_metrics(&self, registry: &prometheus::Registry, prefix: &str) -> Result<(), prometheus::Error> {
        let contest = self.contest.clone();
        registry.register(Box::new(metrics::AdmissionCollector::new(self.metrics.clone(), prefix, move || {
            contest.as_ref().is_none_or(|w| w.current() != Current::Unknown)
        })?))
    }

    /// Decide every vote of a batch (an outer `Err` refuses all of it).
    async fn admit(&self, votes: &[Vote], now: i64) -> Result<Vec<Decision>, PublishError> {
        let current = self.current();
        let contest = steps::known_contest(&current).inspect_err(|_| {
            self.metrics.contest_unknown.fetch_add(votes.len() as u64, Ordering::Relaxed);
        })?;
        let secret = self.secret.as_deref();
        let verdicts: Vec<Result<Stamp, PublishError>> = votes.iter().map(|v| steps::verdict(contest, secret, v, now)).collect();
        // Admission cannot decide (no secret for a token contest): the whole batch waits.
        if let Some(Err(e @ PublishError::Unavailable(_))) = verdicts.iter().find(|v| matches!(v, Err(PublishError::Unavailable(_)))) {
            return Err(e.clone());
        }
        // A refused vote claims nothing; if any is refused the batch is only looked up.
        let any_refused = verdicts.iter().any(Result::is_err);
        let in_contest = contest.is_some();
        let claims = self.claim(votes, &verdicts, !any_refused, in_contest).await?;
        let mut decisions = Vec::with_capacity(votes.len());
        let mut to_claim = Vec::new();
        for (i, ((vote, verdict), claim)) in votes.iter().zip(verdicts).zip(claims).enumerate() {
            decisions.push(match (claim, verdict) {
                // A retry of an admitted vote: its first answer, whatever the rules say now.
                (Some(Claim::Retry(Some(stamp))), _) => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    Decision::Publish { vote: steps::stamped(vote, &stamp), claimed: false }
                }
                // A rule's refusal outranks a key conflict, so it refuses the whole batch.
                (_, Err(e @ PublishError::Refused(_))) => Decision::Refuse(e),
                (Some(Claim::Conflict), _) => {
                    self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    Decision::Refuse(PublishError::Conflict { vote_id: vote.vote_id.clone() })
                }
                (Some(Claim::First), Ok(stamp)) => Decision::Publish { vote: steps::stamped(vote, &stamp), claimed: true },
                (Some(Claim::Unclaimed), Ok(stamp)) => {
                    to_claim.push(i);
                    Decision::Publish { vote: steps::stamped(vote, &stamp), claimed: false }
                }
                (_, Ok(stamp)) => Decision::Publish { vote: steps::stamped(vote, &stamp), claimed: false },
                (_, Err(e)) => Decision::Refuse(e),
            });
        }
        // A contest rule refuses the whole batch (all or nothing); nothing was claimed.
        if let Some(Decision::Refuse(e @ PublishError::Refused(_))) = decisions.iter().find(|d| matches!(d, Decision::Refuse(PublishError::Refused(_)))) {
            return Err(e.clone());
        }
        // Only retries were refused: claim the others now (rare: a second round trip).
        if !to_claim.is_empty() {
            let stamps: Vec<Result<Stamp, PublishError>> = to_claim
                .iter()
                .map(|&i| match &decisions[i] {
                    Decision::Publish { vote, .. } => Ok(Stamp { received_at_ms: vote.received_at_ms, contest: vote.contest.clone(), voter: vote.voter.clone() }),
                    Decision::Refuse(e) => Err(e.clone()),
                })
                .collect();
            let raw: Vec<Vote> = to_claim.iter().map(|&i| votes[i].clone()).collect();
            for (&i, claim) in to_claim.iter().zip(self.claim(&raw, &stamps, true, in_contest).await?) {
                match claim {
                    Some(Claim::First) => {
                        if let Decision::Publish { claimed, .. } = &mut decisions[i] {
                            *claimed = true;
                        }
                    }
                    Some(Claim::Conflict) => decisions[i] = Decision::Refuse(PublishError::Conflict { vote_id: votes[i].vote_id.clone() }),
                    Some(Claim::Retry(Some(stamp))) => {
                        decisions[i] = Decision::Publish { vote: steps::stamped(&votes[i], &stamp), claimed: false }
                    }
                    _ => {}
                }
            }
        }
        self.bound_names(votes, &mut decisions, contest.is_some_and(|c| !c.roster.is_empty())).await;
        Ok(decisions)
    }

    /// Step 4: one round trip for the votes whose id can collide or whose
    /// retry could meet changed rules. Outside a contest a generated id
    /// belongs to no other vote, so keyless traffic costs no Redis call; in
    /// a contest every id is claimed, since a client may retry a 503 that
    /// named its generated id after the close. `None` per vote not looked
    /// up (no claims, a generated id outside a contest, Redis unreachable
    /// outside a contest). In a contest an unreachable Redis is 503: a retry
    /// could not be told from a new vote, and a rule judged again could
    /// refuse a vote whose first attempt counts.
    async fn claim(&self, votes: &[Vote], verdicts: &[Result<Stamp, PublishError>], stamp: bool, in_contest: bool) -> Result<Vec<Option<Claim>>, PublishError> {
        let Some(claims) = &self.claims else { return Ok(votes.iter().map(|_| None).collect()) };
        let collidable: Vec<bool> = votes.iter().map(|v| in_contest || !bandvote_vote::is_generated_id(&v.vote_id)).collect();
        let n = collidable.iter().filter(|c| **c).count();
        if n == 0 {
            return Ok(votes.iter().map(|_| None).collect());
        }
        let asked = votes.iter().zip(verdicts).zip(&collidable).filter(|(_, c)| **c).map(|((v, verdict), _)| (v, if stamp { verdict.as_ref().ok() } else { None }));
        let mut answers = match claims.claim(asked).await {
            Ok(a) => a.into_iter(),
            Err(e) if in_contest => {
                tracing::warn!(error = %e, "idempotency keys not checked during a contest: refusing (503)");
                return Err(PublishError::Unavailable(format!("a contest is running and its retry check (redis) is unreachable: retry ({e})")));
            }
            Err(e) => {
                tracing::warn!(error = %e, "idempotency keys not checked: redis unavailable");
                self.metrics.unchecked.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(votes.iter().map(|_| None).collect());
            }
        };
        Ok(collidable.iter().map(|c| if *c { answers.next() } else { None }).collect())
    }

    /// Step 5: a new band or album name past its cap is refused (its
    /// claim given back). Retries too (a genuine retry's name was admitted
    /// the first time, so it passes; two copies of a new vote sent at once
    /// must not slip past as each other's retry); a roster bounds band names
    /// itself (not albums).
    async fn bound_names(&self, raw: &[Vote], decisions: &mut [Decision], roster: bool) {
        if let Some(cap) = self.bands.as_ref().filter(|_| !roster) {
            self.bound(cap, raw, decisions, |v| &v.band, |band, cap| PublishError::TooManyBands { band, cap }, &self.metrics.bands_refused).await;
        }
        if let Some(cap) = &self.albums {
            self.bound(cap, raw, decisions, |v| &v.album, |album, cap| PublishError::TooManyAlbums { album, cap }, &self.metrics.albums_refused).await;
        }
    }

    async fn bound(
        &self,
        cap: &BandCap,
        raw: &[Vote],
        decisions: &mut [Decision],
        name_of: fn(&Vote) -> &String,
        refuse: fn(String, usize) -> PublishError,
        refused_total: &std::sync::atomic::AtomicU64,
    ) {
        let unknown: Vec<String> = {
            let known = cap.known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut unknown: Vec<String> = decisions
                .iter()
                .filter_map(|d| match d {
                    Decision::Publish { vote, .. } if !known.contains(name_of(vote)) => Some(name_of(vote).clone()),
                    _ => None,
                })
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        if unknown.is_empty() {
            return;
        }
        let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
        let refused: HashSet<&str> = match cap.names.admit(&names).await {
            Ok(admitted) => {
                let mut known = cap.known.lock().unwrap_or_else(PoisonError::into_inner);
                let mut refused = HashSet::new();
                for (name, ok) in names.iter().zip(admitted) {
                    if ok {
                        known.insert((*name).to_owned());
                    } else {
                        refused.insert(*name);
                    }
                }
                refused
            }
            Err(e) => {
                tracing::warn!(error = %e, "names not checked against their cap: redis unavailable");
                return;
            }
        };
        for (d, raw) in decisions.iter_mut().zip(raw) {
            if let Decision::Publish { vote, claimed, .. } = d
                && refused.contains(name_of(vote).as_str())
            {
                refused_total.fetch_add(1, Ordering::Relaxed);
                if *claimed {
                    self.release(raw).await;
                }
                let name = name_of(vote).clone();
                *d = Decision::Refuse(refuse(name, cap.names.cap()));
            }
        }
    }

    /// Give back the key `raw` (the vote as its client sent it) claimed:
    /// it certainly did not reach Kafka, so a corrected vote may use it.
    async fn release(&self, raw: &Vote) {
        if let Some(claims) = &self.claims
            && let Err(e) = claims.release(raw).await
        {
            tracing::debug!(error = %e, vote_id = %raw.vote_id, "claim not released (it expires with the window)");
        }
    }

    async fn publish_one(&self, raw: &Vote) -> Result<Ack, PublishError> {
        let taken = self.in_flight.take(self.clock);
        match self.admit(std::slice::from_ref(raw), taken.at).await?.pop() {
            Some(Decision::Publish { vote, claimed, .. }) => {
                let r = self.inner.publish(&vote).await;
                if let Err(e) = &r
                    && claimed
                    && e.not_sent()
                {
                    self.release(raw).await;
                }
                r
            }
            Some(Decision::Refuse(e)) => Err(e),
            None => Err(PublishError::Unavailable("nothing admitted".into())),
        }
    }

    async fn publish_many(&self, raw: &[Vote]) -> Result<Vec<Result<Ack, PublishError>>, PublishError> {
        let taken = self.in_flight.take(self.clock);
        let decisions = self.admit(raw, taken.at).await?;
        let admitted: Vec<Vote> = decisions.iter().filter_map(|d| if let Decision::Publish { vote, .. } = d { Some(vote.clone()) } else { None }).collect();
        let published = if admitted.is_empty() { Ok(Vec::new()) } else { self.inner.publish_batch(&admitted).await };
        let mut published = match published {
            Ok(p) => p.into_iter(),
            Err(e) => {
                for (d, raw) in decisions.iter().zip(raw) {
                    if let Decision::Publish { claimed: true, .. } = d
                        && e.not_sent()
                    {
                        self.release(raw).await;
                    }
                }
                return Err(e);
            }
        };
        let mut results = Vec::with_capacity(raw.len());
        for (d, raw) in decisions.into_iter().zip(raw) {
            results.push(match d {
                Decision::Refuse(e) => Err(e),
                Decision::Publish { claimed, .. } => {
                    let r = published.next().unwrap_or_else(|| Err(PublishError::Unavailable("no result".into())));
                    if let Err(e) = &r
                        && claimed
                        && e.not_sent()
                    {
                        self.release(raw).await;
                    }
                    r
                }
            });
        }
        Ok(results)
    }
}

impl<P: Publish> Publish for Admission<P> {
    fn publish<'a>(&'a self, vote: &'a Vote) -> futures::future::BoxFuture<'a, Result<Ack, PublishError>> {
        Box::pin(self.publish_one(vote))
    }

    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        Box::pin(self.publish_many(votes))
    }
}

#[cfg(test)]
mod tests;
