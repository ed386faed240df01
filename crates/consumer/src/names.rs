//! `bandvote-consumer names`: the capped sets of band and album names the
//! intakes admit (`bands:known`, `albums:known`; [`BandNames`]). Once junk
//! names fill a cap, every new name is refused (422) for good: `names forget
//! --max-votes N` takes out the names with at most N counted votes (junk
//! sent once or twice), so new names are admitted again. Their counters stay
//! (what was counted stays counted; `recount` still agrees); each forget lets
//! up to that many new names in, so it is an operator's decision, logged.

use std::collections::HashMap;

use bandvote_store::BandNames;

/// The admitted names with at most `max_votes` counted votes (`counts`: the
/// live counters, band or album → votes; a name not in them has none),
/// fewest first.
pub fn rarely_counted(admitted: &[String], counts: &HashMap<String, u64>, max_votes: u64) -> Vec<String> {
    let mut rare: Vec<(u64, &String)> = admitted.iter().map(|n| (counts.get(n).copied().unwrap_or(0), n)).filter(|(c, _)| *c <= max_votes).collect();
    rare.sort();
    rare.into_iter().map(|(_, n)| n.clone()).collect()
}

/// What a `names` command saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesReport {
    /// Names admitted before.
    pub admitted: usize,
    pub cap: usize,
    /// Those with at most the given counted votes (forgotten, for `forget`).
    pub rare: Vec<String>,
}

/// Forget (or, with `dry_run`, only list) the names of `names` with at most
/// `max_votes` counted votes.
pub async fn forget(names: &BandNames, counts: &HashMap<String, u64>, max_votes: u64, dry_run: bool) -> Result<NamesReport, redis::RedisError> {
    let admitted = names.names().await?;
    let rare = rarely_counted(&admitted, counts, max_votes);
    if !dry_run {
        names.forget(&rare).await?;
        tracing::warn!(forgotten = rare.len(), admitted = admitted.len(), cap = names.cap(), max_votes, "names forgotten: as many new names can be admitted (their counters stay)");
    }
    Ok(NamesReport { admitted: admitted.len(), cap: names.cap(), rare })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_few_counted_votes_are_picked_fewest_first() {
        let admitted: Vec<String> = ["Caifanes", "junk-1", "junk-2", "Maná", "never-counted"].map(String::from).into();
        let counts: HashMap<String, u64> = [("Caifanes", 40), ("junk-1", 1), ("junk-2", 2), ("Maná", 3)].into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        assert_eq!(rarely_counted(&admitted, &counts, 2), ["never-counted", "junk-1", "junk-2"]);
        assert_eq!(rarely_counted(&admitted, &counts, 0), ["never-counted"]);
        assert!(rarely_counted(&[], &counts, 100).is_empty());
    }
}
