//! How the failing jobs of a run failed, read where PyTorch's autorevert reads it: the log
//! classifier's rule in the job table (`torchci_classification_kg.rule`) and the failing
//! tests in `tests.all_test_runs` (its query Q3: `failure_count > 0 OR error_count > 0`
//! for the job ids). A restart's test filter is built from them (`restart::scope`).

use super::{Store, Within};
use crate::restart::scope::{TestEvidence, TestFailure};
use anyhow::{Context, Result, bail};
use clickhouse::Row;
use serde::Deserialize;

/// Distinct (job, file) pairs read at most; more means the list is not read whole, and no
/// test filter is sent.
const MAX_TEST_FILES: usize = 10_000;

#[derive(Row, Deserialize)]
struct RuleRow {
    id: i64,
    rule: String,
}

/// One file with failing tests in a job, and one of its failing tests (for messages).
#[derive(Row, Deserialize)]
struct FailureRow {
    job_id: i64,
    file: String,
    classname: String,
    name: String,
}

impl Store {
    /// The classification rule of each job (FINAL: its latest version) and the files of its
    /// failing tests (PyTorch's rows are per test and attempt; one per (job, file) is enough,
    /// with one failing test of it named). Rows of the last 3 days only: the table is
    /// partitioned by insertion time, and a restarted run is hours old at most.
    pub async fn test_evidence(&self, job_ids: &[u64]) -> Result<TestEvidence> {
        let ids: Vec<i64> = job_ids.iter().map(|&id| id as i64).collect();
        let t = &self.tables;
        let rules: Vec<RuleRow> = self
            .client
            .query(&format!(
                "SELECT id, tupleElement(torchci_classification_kg, 'rule') AS rule
                 FROM {} FINAL WHERE id IN {{ids:Array(Int64)}}",
                t.job
            ))
            .param("ids", &ids)
            .fetch_all()
            .within(self)
            .await
            .with_context(|| format!("reading the classification of jobs in {}", t.job))?;
        let failures: Vec<FailureRow> = self
            .client
            .query(&format!(
                "SELECT job_id, file, any(classname) AS classname, any(name) AS name
                 FROM {} WHERE job_id IN {{ids:Array(Int64)}}
                   AND (failure_count > 0 OR error_count > 0)
                   AND time_inserted >= now() - toIntervalDay(3)
                 GROUP BY job_id, file ORDER BY job_id, file LIMIT {}",
                t.tests,
                MAX_TEST_FILES + 1
            ))
            .param("ids", &ids)
            .fetch_all()
            .within(self)
            .await
            .with_context(|| format!("reading failing tests in {}", t.tests))?;
        if failures.len() > MAX_TEST_FILES {
            bail!(
                "more than {MAX_TEST_FILES} files with failing tests in {}",
                t.tests
            );
        }
        Ok(TestEvidence {
            rules: rules.into_iter().map(|r| (r.id as u64, r.rule)).collect(),
            failures: failures
                .into_iter()
                .map(|f| TestFailure {
                    job_id: f.job_id as u64,
                    file: f.file,
                    classname: f.classname,
                    name: f.name,
                })
                .collect(),
            source: format!(
                "{} (failing tests), {}.torchci_classification_kg (rules)",
                t.tests, t.job
            ),
        })
    }
}
