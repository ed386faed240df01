//! Admission's counters and their Prometheus collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};

/// What admission refused or let through unchecked, since start.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub conflicts: AtomicU64,
    pub unchecked: AtomicU64,
    pub retries: AtomicU64,
    pub bands_refused: AtomicU64,
    pub albums_refused: AtomicU64,
    pub contest_unknown: AtomicU64,
}

impl Counts {
    /// The counters in the order of [`NAMES`].
    fn values(&self) -> [u64; 6] {
        [&self.conflicts, &self.unchecked, &self.retries, &self.bands_refused, &self.albums_refused, &self.contest_unknown].map(|a| a.load(Ordering::Relaxed))
    }
}

/// Each counter's name (after the prefix) and help.
const NAMES: [(&str, &str); 6] = [
    ("idempotency_conflicts_total", "Votes refused (409 / ALREADY_EXISTS): their idempotency key stood for a different vote"),
    ("idempotency_unchecked_total", "Votes admitted without an idempotency key check (Redis unreachable)"),
    ("idempotency_retries_total", "Retries of an admitted vote, answered and published as the first attempt"),
    ("bands_refused_total", "Votes refused (422 / INVALID_ARGUMENT): a new band name past the cap of distinct names"),
    ("albums_refused_total", "Votes refused (422 / INVALID_ARGUMENT): a new album name past the cap of distinct albums"),
    ("contest_unknown_total", "Votes refused (503): the current contest was not known"),
];

pub(crate) struct AdmissionCollector<F> {
    counts: Arc<Counts>,
    known: F,
    counters: Vec<IntCounter>,
    contest_known: IntGauge,
    descs: Vec<Desc>,
}

impl<F: Fn() -> bool + Send + Sync> AdmissionCollector<F> {
    pub(crate) fn new(counts: Arc<Counts>, prefix: &str, known: F) -> Result<Self, prometheus::Error> {
        let counters = NAMES
            .iter()
            .map(|(name, help)| IntCounter::with_opts(Opts::new(format!("{prefix}_{name}"), *help)))
            .collect::<Result<Vec<_>, _>>()?;
        let contest_known = IntGauge::with_opts(Opts::new(format!("{prefix}_contest_known"), "1 while the current contest (or its absence) is known"))?;
        let descs = counters.iter().flat_map(|c| c.desc()).chain(contest_known.desc()).cloned().collect();
        Ok(Self { counts, known, counters, contest_known, descs })
    }
}

impl<F: Fn() -> bool + Send + Sync> Collector for AdmissionCollector<F> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        for (counter, value) in self.counters.iter().zip(self.counts.values()) {
            counter.inc_by(value.saturating_sub(counter.get()));
            out.extend(counter.collect());
        }
        self.contest_known.set(i64::from((self.known)()));
        out.extend(self.contest_known.collect());
        out
    }
}
