//! Scoring a policy against the ground truth, and the figures over all seeds.

use super::truth::Truth;
use super::world::SeedOutcome;
use serde::Serialize;

/// One seed under one policy.
#[derive(Debug, Clone, Serialize)]
pub struct SeedScore {
    pub seed: u64,
    pub policy: String,
    pub commits: usize,
    pub breakages: usize,
    /// Breakages the policy reverted before a human fixed them.
    pub caught: usize,
    pub missed: usize,
    /// Reverts of commits that broke nothing.
    pub false_reverts: usize,
    pub false_revert_shas: Vec<String>,
    /// Breaking commit landed -> revert decided, seconds (caught breakages).
    pub time_to_revert_secs: Vec<i64>,
    pub restart_runs: u64,
    pub restart_jobs: u64,
    pub restart_job_hours: f64,
    pub events_seen: u64,
}

pub fn score(truth: &Truth, policy: &str, out: &SeedOutcome) -> SeedScore {
    let mut ttr = Vec::new();
    for b in &truth.breakages {
        if let Some((_, t)) = out
            .reverts
            .iter()
            .find(|(s, t)| *s == b.sha && *t < b.human_fix_at)
        {
            ttr.push(t - b.landed_at);
        }
    }
    let false_revert_shas: Vec<String> = out
        .reverts
        .iter()
        .filter(|(s, _)| !truth.breakages.iter().any(|b| b.sha == *s))
        .map(|(s, _)| s.clone())
        .collect();
    SeedScore {
        seed: truth.seed,
        policy: policy.to_string(),
        commits: truth.commits(),
        breakages: truth.breakages.len(),
        caught: ttr.len(),
        missed: truth.breakages.len() - ttr.len(),
        false_reverts: false_revert_shas.len(),
        false_revert_shas,
        time_to_revert_secs: ttr,
        restart_runs: out.restart_runs,
        restart_jobs: out.restart_jobs,
        restart_job_hours: out.restart_job_secs / 3600.0,
        events_seen: out.events_seen,
    }
}

/// One policy over all seeds.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub seeds: usize,
    pub commits: usize,
    pub breakages: usize,
    pub caught: usize,
    pub missed: usize,
    pub false_reverts: usize,
    pub time_to_revert_median_mins: Option<f64>,
    pub time_to_revert_p90_mins: Option<f64>,
    pub restart_runs: u64,
    pub restart_jobs: u64,
    pub restart_job_hours: f64,
    pub events_seen: u64,
}

/// The q-quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub fn summarize(policy: &str, scores: &[SeedScore]) -> PolicyReport {
    let mut ttr: Vec<i64> = scores
        .iter()
        .flat_map(|s| s.time_to_revert_secs.iter().copied())
        .collect();
    ttr.sort_unstable();
    let mins = |v: Option<i64>| v.map(|s| (s as f64 / 60.0 * 10.0).round() / 10.0);
    PolicyReport {
        policy: policy.to_string(),
        seeds: scores.len(),
        commits: scores.iter().map(|s| s.commits).sum(),
        breakages: scores.iter().map(|s| s.breakages).sum(),
        caught: scores.iter().map(|s| s.caught).sum(),
        missed: scores.iter().map(|s| s.missed).sum(),
        false_reverts: scores.iter().map(|s| s.false_reverts).sum(),
        time_to_revert_median_mins: mins(quantile(&ttr, 0.5)),
        time_to_revert_p90_mins: mins(quantile(&ttr, 0.9)),
        restart_runs: scores.iter().map(|s| s.restart_runs).sum(),
        restart_jobs: scores.iter().map(|s| s.restart_jobs).sum(),
        restart_job_hours: (scores.iter().map(|s| s.restart_job_hours).sum::<f64>() * 10.0).round()
            / 10.0,
        events_seen: scores.iter().map(|s| s.events_seen).sum(),
    }
}

/// The figures as a table.
pub fn table(reports: &[PolicyReport]) -> String {
    let mut out = String::from(
        "| policy | seeds | breakages | caught | missed | false reverts | time to revert median / p90 (min) | restart runs | restart job-hours |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let m = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.0}"));
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {:.1} |\n",
            r.policy,
            r.seeds,
            r.breakages,
            r.caught,
            r.missed,
            r.false_reverts,
            m(r.time_to_revert_median_mins),
            m(r.time_to_revert_p90_mins),
            r.restart_runs,
            r.restart_job_hours
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(2));
        assert_eq!(quantile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), Some(9));
        assert_eq!(quantile(&[7], 0.9), Some(7));
    }
}
