//! The signals grid, as PyTorch's HUD shows its autorevert state (pytorch-autorevert.md
//! §4.6): main's commits newest first, one row per signal with its events on each commit
//! (`F` failed, `S` passed, `P` pending, `-` none) and its decision. Pure: built from a
//! `History` and the decisions per signal, serialized for `--json`, rendered for a
//! terminal by `render_text`.
//!
//! Signals are rows and commits columns: ~150 commits fit a wide terminal as one-character
//! cells, while ~2,000 signals do not fit any as columns. By default only the signals that
//! failed in the window or have a decision that acts (revert, restart) are shown.
//!
//! The decisions layer sits above this one, so a decision reaches the grid through
//! `Explained` (implemented for `decisions::Decision`).

use super::history::History;
use super::model::{Outcome, SignalEvent, SignalKey};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// What a decision is, for the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Revert,
    Restart,
    Ineligible,
}

/// A signal's decision as the grid shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// `revert`, `restart` or the reason it is ineligible (`flaky`, `fixed`, …).
    pub label: String,
    /// Why, in words (the evidence of a revert, the reasons of the restarts).
    pub reason: String,
    /// The commit blamed (a revert).
    pub suspect: Option<String>,
    /// The newest commit that passed below it (a revert).
    pub baseline: Option<String>,
    /// The commits to run again (a restart), newest first.
    pub restart: Vec<String>,
}

/// Anything the grid can show as a signal's decision.
pub trait Explained {
    fn verdict(&self) -> Verdict;
}

impl Explained for Verdict {
    fn verdict(&self) -> Verdict {
        self.clone()
    }
}

/// A commit of the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridCommit {
    pub sha: String,
    /// When it was pushed to main, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<DateTime<Utc>>,
}

/// One row: a signal, its events on each commit and its decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridSignal {
    pub workflow: String,
    pub job: String,
    /// It failed somewhere in the window.
    pub failing: bool,
    /// One cell per commit, in the order of `Grid::commits`: the events, oldest first.
    pub cells: Vec<Vec<SignalEvent>>,
    /// None: no decision was made for it (the engine decides failing signals only).
    pub decision: Option<Verdict>,
}

impl GridSignal {
    pub fn key(&self) -> SignalKey {
        SignalKey::new(self.workflow.clone(), self.job.clone())
    }

    /// `workflow:job`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.workflow, self.job)
    }
}

/// The grid: commits newest first, signals with a decision that acts first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    pub commits: Vec<GridCommit>,
    pub signals: Vec<GridSignal>,
    /// Signals left out: no failure in the window and no decision that acts (`all`: none).
    pub hidden: usize,
}

/// The letter of an event: `F` failed, `S` passed, `P` pending.
pub fn letter(o: Outcome) -> char {
    match o {
        Outcome::Failure => 'F',
        Outcome::Success => 'S',
        Outcome::Pending => 'P',
    }
}

impl Grid {
    /// The grid of every signal seen in `history` or decided in `decisions`. With `all`
    /// false, only those that failed in the window or whose decision is a revert or a
    /// restart.
    pub fn build<D: Explained>(history: &History, decisions: &[(SignalKey, D)], all: bool) -> Grid {
        let verdicts: BTreeMap<&SignalKey, Verdict> =
            decisions.iter().map(|(k, d)| (k, d.verdict())).collect();
        let mut keys: Vec<&SignalKey> = history.keys().collect();
        let seen: HashSet<&SignalKey> = keys.iter().copied().collect();
        keys.extend(verdicts.keys().copied().filter(|k| !seen.contains(k)));
        let total = keys.len();
        let mut signals: Vec<GridSignal> = keys
            .into_iter()
            .filter(|k| {
                all || history.is_failing(k)
                    || verdicts
                        .get(k)
                        .is_some_and(|v| v.kind != VerdictKind::Ineligible)
            })
            .map(|k| {
                let cells = history
                    .signal(k)
                    .commits
                    .into_iter()
                    .map(|c| c.events)
                    .collect();
                GridSignal {
                    workflow: k.workflow.clone(),
                    job: k.job.clone(),
                    failing: history.is_failing(k),
                    cells,
                    decision: verdicts.get(k).cloned(),
                }
            })
            .collect();
        signals.sort_by_cached_key(rank);
        Grid {
            commits: history
                .commits()
                .newest_first()
                .map(|sha| GridCommit {
                    sha: sha.to_string(),
                    pushed_at: None,
                })
                .collect(),
            hidden: total - signals.len(),
            signals,
        }
    }

    /// Fills in when each commit was pushed, where `pushed_at` knows it.
    pub fn with_pushed_at(mut self, pushed_at: impl Fn(&str) -> Option<DateTime<Utc>>) -> Grid {
        for c in &mut self.commits {
            c.pushed_at = pushed_at(&c.sha);
        }
        self
    }
}

/// Reverts first, then restarts, then failing signals, then the rest; by name within.
fn rank(s: &GridSignal) -> (VerdictKind, bool, String, String) {
    let kind = s
        .decision
        .as_ref()
        .map_or(VerdictKind::Ineligible, |d| d.kind);
    (kind, !s.failing, s.workflow.clone(), s.job.clone())
}

/// A cell's text: its events' letters, oldest first; `-` when it has none; more than
/// `width` events end in `+`.
fn cell_text(events: &[SignalEvent], width: usize) -> String {
    if events.is_empty() {
        return "-".to_string();
    }
    let letters: String = events.iter().map(|e| letter(e.status)).collect();
    if letters.len() <= width {
        return letters;
    }
    let mut cut: String = letters.chars().take(width.saturating_sub(1)).collect();
    cut.push('+');
    cut
}

/// Most events shown in one cell (more end in `+`).
const MAX_CELL: usize = 3;

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// `text` cut to `width` characters, with `…` in the middle when cut (a job name's both
/// ends say the most: the platform and the config).
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    if width < 2 {
        return text.chars().take(width).collect();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// A decision's column text: `REVERT`, `RESTART`, the ineligible reason, or `-`.
fn decision_text(s: &GridSignal) -> String {
    match &s.decision {
        Some(v) if v.kind != VerdictKind::Ineligible => v.label.to_uppercase(),
        Some(v) => v.label.clone(),
        None => "-".to_string(),
    }
}

/// The commits (indices) a row of `width` characters can show: every one when they fit;
/// else first without those where no shown signal has an event (and no decision names),
/// then the newest that fit. Returns the indices and what was left out.
fn columns(grid: &Grid, fits: usize) -> (Vec<usize>, usize, usize) {
    let n = grid.commits.len();
    if n <= fits {
        return ((0..n).collect(), 0, 0);
    }
    let named: HashSet<&str> = grid
        .signals
        .iter()
        .filter_map(|s| s.decision.as_ref())
        .flat_map(|v| v.suspect.iter().chain(&v.baseline).chain(&v.restart))
        .map(String::as_str)
        .collect();
    let kept: Vec<usize> = (0..n)
        .filter(|&i| {
            named.contains(grid.commits[i].sha.as_str())
                || grid.signals.iter().any(|s| !s.cells[i].is_empty())
        })
        .collect();
    let quiet = n - kept.len();
    let older = kept.len().saturating_sub(fits);
    (kept.into_iter().take(fits).collect(), quiet, older)
}

/// The grid for a terminal `width` characters wide: a header of short shas written
/// downwards, one row per signal (name, decision, cells), then a legend and each
/// decision's reason.
pub fn render_text(grid: &Grid, width: usize) -> String {
    let mut out = String::new();
    if grid.signals.is_empty() {
        let _ = writeln!(
            out,
            "no signal to show over {} commit(s); {} quiet signal(s) (--all shows them)",
            grid.commits.len(),
            grid.hidden
        );
        return out;
    }
    let cell = grid
        .signals
        .iter()
        .flat_map(|s| s.cells.iter().map(Vec::len))
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_CELL);
    let name_width = grid
        .signals
        .iter()
        .map(|s| s.name().chars().count())
        .max()
        .unwrap_or(0)
        .clamp(14, (width / 3).clamp(20, 60));
    let decision_width = grid
        .signals
        .iter()
        .map(|s| decision_text(s).chars().count())
        .max()
        .unwrap_or(1)
        .clamp(8, 24);
    let lead = name_width + decision_width + 2;
    let fits = (width.saturating_sub(lead) + 1) / (cell + 1);
    let (cols, quiet, older) = columns(grid, fits.max(1));
    header(&mut out, grid, &cols, lead, cell);
    let _ = writeln!(
        out,
        "{:<name_width$} {:<decision_width$}",
        "signal", "decision"
    );
    for s in &grid.signals {
        let cells: Vec<String> = cols
            .iter()
            .map(|&i| format!("{:<cell$}", cell_text(&s.cells[i], cell)))
            .collect();
        let line = format!(
            "{:<name_width$} {:<decision_width$} {}",
            fit(&s.name(), name_width),
            fit(&decision_text(s), decision_width),
            cells.join(" ")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    footer(&mut out, grid, quiet, older);
    out
}

/// The short shas of the shown commits, one character a line, newest on the left.
fn header(out: &mut String, grid: &Grid, cols: &[usize], lead: usize, cell: usize) {
    let shas: Vec<Vec<char>> = cols
        .iter()
        .map(|&i| short(&grid.commits[i].sha).chars().collect())
        .collect();
    let depth = shas.iter().map(Vec::len).max().unwrap_or(0);
    for row in 0..depth {
        let title = if row == 0 {
            "commits, newest first:"
        } else {
            ""
        };
        let chars: Vec<String> = shas
            .iter()
            .map(|s| format!("{:<cell$}", s.get(row).copied().unwrap_or(' ')))
            .collect();
        let line = format!("{title:>w$} {}", chars.join(" "), w = lead - 1);
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The legend, what was left out, and each shown decision's reason.
fn footer(out: &mut String, grid: &Grid, quiet: usize, older: usize) {
    let _ = writeln!(
        out,
        "\nF failed, S passed, P pending, - no event (several: oldest first, + more)"
    );
    let mut left_out = Vec::new();
    if quiet > 0 {
        left_out.push(format!("{quiet} commit(s) with no event in these signals"));
    }
    if older > 0 {
        left_out.push(format!(
            "the {older} oldest commit(s) (a wider terminal or --json shows them)"
        ));
    }
    if grid.hidden > 0 {
        left_out.push(format!(
            "{} signal(s) with no failure and no revert or restart (--all shows them)",
            grid.hidden
        ));
    }
    if !left_out.is_empty() {
        let _ = writeln!(out, "not shown: {}", left_out.join("; "));
    }
    let decided: Vec<(&GridSignal, &Verdict)> = grid
        .signals
        .iter()
        .filter_map(|s| s.decision.as_ref().map(|v| (s, v)))
        .collect();
    if decided.is_empty() {
        return;
    }
    let _ = writeln!(out, "\ndecisions:");
    for (s, v) in decided {
        let mut line = format!("  {}: {}", s.name(), v.label);
        if let Some(suspect) = &v.suspect {
            let _ = write!(line, " {}", short(suspect));
        }
        if let Some(baseline) = &v.baseline {
            let _ = write!(line, " (baseline {})", short(baseline));
        }
        if !v.restart.is_empty() {
            let shas: Vec<&str> = v.restart.iter().map(|s| short(s)).collect();
            let _ = write!(line, " {}", shas.join(", "));
        }
        if !v.reason.is_empty() {
            let _ = write!(line, " — {}", v.reason);
        }
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::{Decision, DecisionConfig, decide};
    use crate::intake::events::Job;
    use crate::intake::states::{Conclusion, RunStatus};
    use chrono::{Duration, TimeZone};

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    const TEST: &str = "linux-jammy / test (default, 1, 1, linux.2xlarge)";
    const BUILD: &str = "linux-jammy / build";

    fn sha(c: char) -> String {
        c.to_string().repeat(40)
    }

    /// A finished job of `name` on commit `c`, started at minute `start` (one run per job).
    fn job(id: u64, name: &str, c: char, start: i64, conclusion: &str) -> Job {
        Job {
            id,
            run_id: 1000 + id,
            run_attempt: 1,
            name: name.into(),
            workflow_name: "trunk".into(),
            head_sha: sha(c),
            head_branch: Some("main".into()),
            status: RunStatus::Completed,
            conclusion: Some(Conclusion::from(conclusion)),
            created_at: Some(t(start)),
            started_at: Some(t(start)),
            completed_at: Some(t(start + 30)),
            ..Default::default()
        }
    }

    fn test_key() -> SignalKey {
        SignalKey::new("trunk", "linux-jammy / test (default)")
    }

    fn build_key() -> SignalKey {
        SignalKey::new("trunk", BUILD)
    }

    /// Commits a (oldest) to e. The test breaks at c: c fails twice (once after the
    /// baseline b passed again), d and e fail; a and b pass. The build passes on every
    /// commit but d (no event there).
    fn history() -> History {
        let mut h = History::new();
        let shas: Vec<String> = "abcde".chars().map(sha).collect();
        h.push(&shas, t(0));
        let mut id = 0;
        let mut add = |name: &str, c: char, start: i64, conclusion: &str| {
            id += 1;
            h.record_job(&job(id, name, c, start, conclusion));
        };
        add(TEST, 'a', 5, "success");
        add(TEST, 'b', 10, "success");
        add(TEST, 'c', 20, "failure");
        add(TEST, 'd', 30, "failure");
        add(TEST, 'e', 40, "failure");
        add(TEST, 'b', 100, "success");
        add(TEST, 'c', 110, "failure");
        for c in ['a', 'b', 'c', 'e'] {
            add(BUILD, c, 1, "success");
        }
        h
    }

    fn decisions(h: &History) -> Vec<(SignalKey, Decision)> {
        let cfg = DecisionConfig::pytorch();
        [test_key(), build_key()]
            .into_iter()
            .map(|k| {
                let d = decide(&h.signal(&k), &cfg);
                (k, d)
            })
            .collect()
    }

    #[test]
    fn the_grid_holds_each_signal_s_events_per_commit_and_its_decision() {
        let h = history();
        let d = decisions(&h);
        assert_eq!(d[0].1.label(), "revert", "{:?}", d[0].1);
        let grid = Grid::build(&h, &d, false);
        let shas: Vec<&str> = grid.commits.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(
            shas,
            ["e", "d", "c", "b", "a"]
                .map(|c| sha(c.chars().next().unwrap()))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        // The build never failed and is ineligible (no failures): quiet by default.
        assert_eq!(grid.signals.len(), 1);
        assert_eq!(grid.hidden, 1);
        let test = &grid.signals[0];
        assert_eq!(test.key(), test_key());
        assert!(test.failing);
        let letters: Vec<String> = test.cells.iter().map(|c| cell_text(c, 3)).collect();
        assert_eq!(letters, ["F", "F", "FF", "SS", "S"]);
        let v = test.decision.as_ref().unwrap();
        assert_eq!(v.kind, VerdictKind::Revert);
        assert_eq!(v.suspect.as_deref(), Some(sha('c').as_str()));
        assert_eq!(v.baseline.as_deref(), Some(sha('b').as_str()));

        let all = Grid::build(&h, &d, true);
        assert_eq!((all.signals.len(), all.hidden), (2, 0));
        assert_eq!(all.signals[0].key(), test_key(), "the revert comes first");
        let build: Vec<String> = all.signals[1]
            .cells
            .iter()
            .map(|c| cell_text(c, 3))
            .collect();
        assert_eq!(build, ["S", "-", "S", "S", "S"]);
        assert_eq!(
            all.signals[1].decision.as_ref().unwrap().label,
            "no_failures"
        );
    }

    #[test]
    fn the_json_names_commits_cells_and_decisions() {
        let h = history();
        let grid = Grid::build(&h, &decisions(&h), false)
            .with_pushed_at(|s| (s == sha('e')).then(|| t(0)));
        let json = serde_json::to_value(&grid).unwrap();
        assert_eq!(json["commits"][0]["sha"], sha('e'));
        assert_eq!(json["commits"][0]["pushed_at"], "2026-11-30T00:00:00Z");
        assert!(json["commits"][1].get("pushed_at").is_none());
        let row = &json["signals"][0];
        assert_eq!(row["workflow"], "trunk");
        assert_eq!(row["job"], "linux-jammy / test (default)");
        assert_eq!(row["cells"][2].as_array().unwrap().len(), 2);
        assert_eq!(row["cells"][2][0]["status"], "failure");
        assert_eq!(row["cells"][2][0]["job_name"], TEST);
        assert_eq!(row["decision"]["kind"], "revert");
        assert_eq!(row["decision"]["suspect"], sha('c'));
        assert_eq!(json["hidden"], 1);
    }

    #[test]
    fn a_restart_decision_is_shown_and_names_its_commits() {
        let mut h = History::new();
        let shas: Vec<String> = "abcd".chars().map(sha).collect();
        h.push(&shas, t(0));
        h.record_job(&job(1, TEST, 'a', 5, "success"));
        h.record_job(&job(2, TEST, 'c', 20, "failure"));
        h.record_job(&job(3, TEST, 'd', 30, "failure"));
        let d = decisions(&h);
        let Decision::Restart(r) = &d[0].1 else {
            panic!("{:?}", d[0].1);
        };
        let grid = Grid::build(&h, &d, false);
        let v = grid.signals[0].decision.clone().unwrap();
        assert_eq!(v.kind, VerdictKind::Restart);
        let asked: Vec<String> = r.commits.iter().map(|c| c.sha.clone()).collect();
        assert_eq!(v.restart, asked);
        assert!(
            v.reason
                .contains(&sha(asked[0].chars().next().unwrap())[..7]),
            "{}",
            v.reason
        );
        let text = render_text(&grid, 120);
        assert!(text.contains("RESTART"), "{text}");
        assert!(
            text.contains("  trunk:linux-jammy / test (default): restart "),
            "{text}"
        );
    }

    #[test]
    fn the_text_has_a_sha_header_one_row_per_signal_and_the_reasons() {
        let h = history();
        let grid = Grid::build(&h, &decisions(&h), true);
        let text = render_text(&grid, 120);
        let lines: Vec<&str> = text.lines().collect();
        // Seven header lines: each commit's short sha, downwards, newest left.
        assert!(
            lines[0].starts_with(' ') && lines[0].ends_with("commits, newest first: e  d  c  b  a"),
            "{text}"
        );
        assert!(lines[6].ends_with("e  d  c  b  a"), "{text}");
        assert!(
            lines[7].starts_with("signal ") && lines[7].contains("decision"),
            "{text}"
        );
        let row = lines[8];
        assert!(
            row.starts_with("trunk:linux-jammy / test (default) "),
            "{row}"
        );
        assert!(
            row.contains(" REVERT ") && row.ends_with("F  F  FF SS S"),
            "{row}"
        );
        assert!(
            lines[9].contains(" no_failures ") && lines[9].ends_with("S  -  S  S  S"),
            "{}",
            lines[9]
        );
        // The cells start where the header's shas do.
        let col = lines[6].rfind('e').unwrap();
        assert_eq!(&row[col..col + 1], "F", "{text}");
        assert!(text.contains("F failed, S passed, P pending, - no event"));
        let reason = format!(
            "  trunk:linux-jammy / test (default): revert {} (baseline {}) — 4 failure and 3 success event(s)",
            &sha('c')[..7],
            &sha('b')[..7]
        );
        assert!(text.contains(&reason), "{text}");
        assert!(!text.contains("not shown"), "{text}");
    }

    #[test]
    fn a_narrow_terminal_drops_quiet_commits_then_the_oldest_and_says_so() {
        let mut h = history();
        // Three newer commits nobody ran: no event in any signal.
        let newer: Vec<String> = "xyz".chars().map(sha).collect();
        h.push(&newer, t(200));
        let grid = Grid::build(&h, &decisions(&h), false);
        assert_eq!(grid.commits.len(), 8);
        let wide = render_text(&grid, 200);
        assert!(
            wide.lines()
                .nth(8)
                .unwrap()
                .ends_with("-  -  -  F  F  FF SS S"),
            "{wide}"
        );
        // Room for four cells (a 20-character name, the decision, cells of two and a
        // space): the three quiet commits go first, then the oldest.
        let narrow = render_text(&grid, 20 + 1 + 8 + 1 + 4 * 3 - 1);
        let row = narrow.lines().nth(8).unwrap();
        assert!(row.ends_with("F  F  FF SS"), "{narrow}");
        assert!(
            narrow.contains(
                "not shown: 3 commit(s) with no event in these signals; the 1 oldest commit(s)"
            ),
            "{narrow}"
        );
        assert!(narrow.contains("1 signal(s) with no failure"), "{narrow}");
        // Far too narrow, or empty: no panic, still one column.
        assert!(render_text(&grid, 0).contains("FF") || render_text(&grid, 0).contains('F'));
        let empty = Grid::build(&History::new(), &Vec::<(SignalKey, Verdict)>::new(), false);
        assert!(render_text(&empty, 80).starts_with("no signal to show over 0 commit(s)"));
    }

    #[test]
    fn crowded_cells_end_in_a_plus_and_long_names_are_cut_in_the_middle() {
        let events: Vec<SignalEvent> = [
            Outcome::Failure,
            Outcome::Success,
            Outcome::Pending,
            Outcome::Failure,
        ]
        .into_iter()
        .map(|status| SignalEvent {
            status,
            started_at: t(0),
            ended_at: None,
            run_id: 1,
            attempt: 1,
            job_name: String::new(),
            job_id: 0,
            ..SignalEvent::default()
        })
        .collect();
        assert_eq!(cell_text(&events, 3), "FS+");
        assert_eq!(cell_text(&events[..3], 3), "FSP");
        assert_eq!(cell_text(&[], 3), "-");
        assert_eq!(
            fit("trunk:linux-jammy-py3.10-gcc11 / test (default)", 20),
            "trunk:lin… (default)"
        );
        assert_eq!(fit("short", 20), "short");
        assert_eq!(fit("abc", 1), "a");
    }
}
