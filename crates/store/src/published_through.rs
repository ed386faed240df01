//! How far each intake has published: every intake reports, about once a
//! second, the time (by its own clock) up to which every vote it received is
//! either in Kafka or was answered as not taken. `contest certify` reads the
//! reports and waits until every intake that could still publish has
//! reported past the close, so a vote received before the close and still on
//! its way to Kafka (a slow broker, a long delivery) is in the certificate.
//!
//! One Redis hash ([`keys::PUBLISHED_THROUGH`]): intake → `"<through_ms>
//! <reported_ms>"`. Each report forgets the intakes that stopped reporting an
//! hour before it (restarted pods), so the hash is bounded by the intakes
//! alive in the last hour.

use crate::reconnecting::Reconnecting;
use redis::Script;

use crate::intake_redis::fail_fast_connection;
use crate::keys;

/// Set `ARGV[1]`'s report to `ARGV[2] ARGV[3]` and forget the reports made
/// before `ARGV[4]` (ms since the epoch).
static REPORT_LUA: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local forget = tonumber(ARGV[4])
for i = 1, #all, 2 do
  local reported = tonumber(string.match(all[i + 1], ' (%-?%d+)$'))
  if reported == nil or reported < forget then redis.call('HDEL', KEYS[1], all[i]) end
end
return 1
";

/// A report is forgotten an hour after it was made.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// One intake's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeReport {
    /// The intake (`<host>:<pid>`).
    pub intake: String,
    /// Every vote it received at or before this time (its clock, ms since
    /// the epoch) is in Kafka or was answered as not taken.
    pub through_ms: i64,
    /// When it made this report (its clock).
    pub reported_ms: i64,
}

impl IntakeReport {
    /// Parse a stored `"<through_ms> <reported_ms>"`.
    fn parse(intake: String, value: &str) -> Option<Self> {
        let (through, reported) = value.split_once(' ')?;
        Some(Self { intake, through_ms: through.parse().ok()?, reported_ms: reported.parse().ok()? })
    }
}

/// The intakes' reports, over one auto-reconnecting connection.
#[derive(Clone)]
pub struct PublishedThrough {
    con: Reconnecting,
    key: String,
    script: Script,
}

impl PublishedThrough {
    /// The reports at `url` (keys under `prefix`), connected on first use; a
    /// call gives up after 500 ms.
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self { con: fail_fast_connection(url)?, key: format!("{prefix}{}", keys::PUBLISHED_THROUGH), script: Script::new(REPORT_LUA) })
    }

    /// Record `intake`'s report.
    pub async fn report(&self, intake: &str, through_ms: i64, reported_ms: i64) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        self.script
            .key(&self.key)
            .arg(intake)
            .arg(through_ms)
            .arg(reported_ms)
            .arg(reported_ms.saturating_sub(FORGET_AFTER_MS))
            .invoke_async::<i64>(&mut con)
            .await
            .map(drop)
    }

    /// Every intake's last report (unreadable entries left out).
    pub async fn all(&self) -> Result<Vec<IntakeReport>, redis::RedisError> {
        let mut con = self.con.clone();
        let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL").arg(&self.key).query_async(&mut con).await?;
        let mut reports: Vec<IntakeReport> = all.into_iter().filter_map(|(k, v)| IntakeReport::parse(k, &v)).collect();
        reports.sort_by(|a, b| a.intake.cmp(&b.intake));
        Ok(reports)
    }
}

/// The intakes that may still publish a vote received at or before
/// `closes_at_ms`: those whose last report is not past it, unless that
/// report is older than `gone_after_ms` at `now_ms` (an intake that stopped
/// reporting that long ago has stopped or lost Redis, and without Redis it
/// admits no contest vote; what it had in flight is delivered or failed
/// within its delivery timeout, which `gone_after_ms` covers).
pub fn still_publishing(reports: &[IntakeReport], closes_at_ms: i64, now_ms: i64, gone_after_ms: i64) -> Vec<&IntakeReport> {
    reports.iter().filter(|r| r.through_ms <= closes_at_ms && r.reported_ms >= now_ms.saturating_sub(gone_after_ms)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(intake: &str, through_ms: i64, reported_ms: i64) -> IntakeReport {
        IntakeReport { intake: intake.into(), through_ms, reported_ms }
    }

    #[test]
    fn an_intake_holding_a_vote_from_before_the_close_is_waited_for() {
        let reports = [report("a", 1_001, 1_001), report("b", 999, 1_500), report("c", 1_000, 1_500)];
        let pending: Vec<&str> = still_publishing(&reports, 1_000, 2_000, 5_000).iter().map(|r| r.intake.as_str()).collect();
        assert_eq!(pending, ["b", "c"], "through the close itself is not past it");
    }

    #[test]
    fn an_intake_silent_longer_than_the_settle_time_is_not_waited_for() {
        let reports = [report("gone", 500, 500), report("slow", 900, 9_000)];
        let pending: Vec<&str> = still_publishing(&reports, 1_000, 10_000, 5_000).iter().map(|r| r.intake.as_str()).collect();
        assert_eq!(pending, ["slow"]);
    }

    #[test]
    fn stored_reports_parse_and_junk_is_left_out() {
        assert_eq!(IntakeReport::parse("x".into(), "12 34"), Some(report("x", 12, 34)));
        assert_eq!(IntakeReport::parse("x".into(), "12"), None);
        assert_eq!(IntakeReport::parse("x".into(), "a b"), None);
    }
}
