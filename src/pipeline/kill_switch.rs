//! The kill switch as the pipeline consults it. Decisions never look it up themselves: a
//! refresher per repository (a task of its own, started by the first possible restart
//! there) looks it up every `ttl`, and a decision reads the last state it found. Only when
//! that state cannot stand (the first decision for a repository, or the last lookup
//! failed) does a decision ask for a lookup and wait for it, at most `LOOKUP_WAIT`.
//!
//! It fails closed: while the state is unknown (a lookup failed or timed out, or none
//! finished in time) restarts are held, and the reason is recorded with each held restart.
//! With `ttl` zero every decision waits for a lookup of its own (tests).
//!
//! `KillSwitches::view` is what the status page and `/healthz` show: each repository's state
//! as its refresher last found it, since when, and whether lookups are failing.

use super::effects::Actions;
use crate::github::KillSwitch;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The longest one lookup may take; past it the state is unknown (the read retry layer
/// alone may wait minutes on rate limits).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a decision waits for a lookup when no state is current.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(10);

/// What is known of a repository's kill switch.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchState {
    Off,
    On(KillSwitch),
    /// The lookup failed, or none finished in time: restarts are held.
    Unknown(String),
}

impl SwitchState {
    /// Why restarts are held, if they are.
    pub fn hold_reason(&self) -> Option<String> {
        match self {
            SwitchState::Off => None,
            SwitchState::On(ks) => Some(format!("kill switch on: {ks}")),
            SwitchState::Unknown(why) => Some(format!("kill switch state unknown: {why}")),
        }
    }
}

/// One lookup: when it ran and what it found.
#[derive(Debug, Clone)]
struct Lookup {
    started: Instant,
    finished: Instant,
    state: SwitchState,
    /// When it finished, and since when lookups have found this state (wall clock).
    at: DateTime<Utc>,
    since: DateTime<Utc>,
    /// When a lookup last succeeded (None: none has).
    last_success: Option<DateTime<Utc>>,
}

/// Whether two states are the same for an operator (pure): off and off, the same switch, or
/// unknown and unknown whatever the reasons.
fn same_state(a: &SwitchState, b: &SwitchState) -> bool {
    match (a, b) {
        (SwitchState::Unknown(_), SwitchState::Unknown(_)) => true,
        _ => a == b,
    }
}

/// A repository's kill switch as the status page and `/healthz` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchView {
    pub repo: String,
    /// `on`, `off`, `unknown` (lookups fail: restarts are held, failing closed), or
    /// `not_looked_up` (no restart has been possible there since the App started; the first
    /// one starts the lookups).
    pub state: &'static str,
    /// Restarts of this repository are held now (on, or unknown).
    pub holds_restarts: bool,
    /// Since when lookups have found this state.
    pub since: Option<DateTime<Utc>>,
    /// The issue that switched restarts off, and who labelled it.
    pub switch: Option<KillSwitch>,
    /// Why the state is unknown.
    pub reason: Option<String>,
    /// When the last lookup finished, and when one last succeeded.
    pub last_lookup: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The last lookup failed (the state shown is then `unknown`).
    pub failing: bool,
    /// The refresher is overdue (no lookup within `ttl` and the longest a lookup takes).
    pub stale: bool,
}

impl SwitchView {
    fn of(repo: &str, l: Option<&Lookup>, ttl: Duration) -> SwitchView {
        let Some(l) = l else {
            return SwitchView {
                repo: repo.to_string(),
                state: "not_looked_up",
                holds_restarts: false,
                since: None,
                switch: None,
                reason: None,
                last_lookup: None,
                last_success: None,
                failing: false,
                stale: false,
            };
        };
        let (state, switch, reason) = match &l.state {
            SwitchState::Off => ("off", None, None),
            SwitchState::On(ks) => ("on", Some(ks.clone()), None),
            SwitchState::Unknown(why) => ("unknown", None, Some(why.clone())),
        };
        SwitchView {
            repo: repo.to_string(),
            state,
            holds_restarts: l.state.hold_reason().is_some(),
            since: Some(l.since),
            switch,
            reason,
            last_lookup: Some(l.at),
            last_success: l.last_success,
            failing: state == "unknown",
            stale: !ttl.is_zero() && l.finished.elapsed() > ttl + LOOKUP_TIMEOUT,
        }
    }
}

/// Whether a lookup's state may stand for a decision taken at `asked`, without asking for
/// another (pure). An unknown state never does: the decision asks for a lookup of its own.
/// With `ttl` zero, only a lookup that started after the decision; otherwise one that
/// finished within `ttl` and the longest a lookup takes (the refresher has replaced it by
/// then, unless it is stuck).
fn stands(l: &Lookup, asked: Instant, ttl: Duration) -> bool {
    if matches!(l.state, SwitchState::Unknown(_)) {
        return false;
    }
    if ttl.is_zero() {
        l.started >= asked
    } else {
        asked.saturating_duration_since(l.finished) <= ttl + LOOKUP_TIMEOUT
    }
}

/// Whether a decision taken at `asked` that waits takes this lookup's state (pure): one that
/// stands, one that started after the decision, or, with a `ttl`, the first lookup of all
/// (`first`: there was none when the decision came).
fn answers(l: &Lookup, asked: Instant, ttl: Duration, first: bool) -> bool {
    stands(l, asked, ttl) || l.started >= asked || (first && !ttl.is_zero())
}

/// A repository's refresher, as decisions reach it.
struct Refresher {
    lookups: watch::Receiver<Option<Lookup>>,
    /// Asks for a lookup now.
    wake: watch::Sender<()>,
    /// The installation to look up as (the latest delivery's).
    installation: Arc<Mutex<Option<u64>>>,
}

pub struct KillSwitches {
    /// Label of the kill-switch issue; None: no kill switch.
    label: Option<String>,
    ttl: Duration,
    github: Arc<dyn Actions>,
    repos: Mutex<HashMap<String, Refresher>>,
}

impl KillSwitches {
    pub fn new(label: Option<String>, ttl: Duration, github: Arc<dyn Actions>) -> KillSwitches {
        KillSwitches {
            label,
            ttl,
            github,
            repos: Mutex::default(),
        }
    }

    /// Every repository's switch as last looked up: those of `configured` first (in their
    /// order; `not_looked_up` when no lookup started there yet), then any other looked up.
    /// Empty when no kill switch is configured.
    pub fn view(&self, configured: &[String]) -> Vec<SwitchView> {
        if self.label.is_none() {
            return Vec::new();
        }
        let repos = self.repos.lock().expect("kill switches lock");
        let last = |repo: &str| {
            repos
                .iter()
                .find(|(r, _)| r.eq_ignore_ascii_case(repo))
                .and_then(|(_, f)| f.lookups.borrow().clone())
        };
        let mut out: Vec<SwitchView> = configured
            .iter()
            .map(|repo| SwitchView::of(repo, last(repo).as_ref(), self.ttl))
            .collect();
        let mut others: Vec<&String> = repos
            .keys()
            .filter(|r| !configured.iter().any(|c| c.eq_ignore_ascii_case(r)))
            .collect();
        others.sort();
        for repo in others {
            out.push(SwitchView::of(repo, last(repo).as_ref(), self.ttl));
        }
        out
    }

    /// The kill-switch label (None: no kill switch) and how often it is looked up.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The state restarts of `repo` are decided under: the last lookup's, or, when it cannot
    /// stand (none yet, too old, or unknown), the next one's, waited for up to `LOOKUP_WAIT`
    /// (unknown past that).
    pub async fn state(&self, repo: &str, installation: Option<u64>) -> SwitchState {
        let Some(label) = self.label.as_deref() else {
            return SwitchState::Off;
        };
        let asked = Instant::now();
        let mut lookups = self.refresher(repo, label, installation, asked);
        let last = lookups.borrow().clone();
        if let Some(l) = &last
            && stands(l, asked, self.ttl)
        {
            return l.state.clone();
        }
        let (ttl, first) = (self.ttl, last.is_none());
        let next = lookups.wait_for(|l| l.as_ref().is_some_and(|l| answers(l, asked, ttl, first)));
        if let Ok(Ok(l)) = tokio::time::timeout(LOOKUP_WAIT, next).await
            && let Some(l) = l.as_ref()
        {
            return l.state.clone();
        }
        let waited = LOOKUP_WAIT.as_secs();
        SwitchState::Unknown(match last.map(|l| l.state) {
            Some(SwitchState::Unknown(why)) => format!("{why}; no lookup since within {waited} s"),
            _ => format!("no lookup finished within {waited} s"),
        })
    }

    /// The lookups of `repo`'s refresher, started now if there is none; asks it for a lookup
    /// now when its last one cannot stand for a decision taken at `asked`.
    fn refresher(
        &self,
        repo: &str,
        label: &str,
        installation: Option<u64>,
        asked: Instant,
    ) -> watch::Receiver<Option<Lookup>> {
        let mut repos = self.repos.lock().expect("kill switches lock");
        // A refresher that ended (it cannot, short of a panic) is started again.
        if let Some(r) = repos.get(repo).filter(|r| !r.wake.is_closed()) {
            if installation.is_some() {
                *r.installation.lock().expect("installation lock") = installation;
            }
            // With a ttl, the first lookup (still under way) will do; without, only one that
            // starts after `asked`.
            let ask = match r.lookups.borrow().as_ref() {
                Some(l) => !stands(l, asked, self.ttl),
                None => self.ttl.is_zero(),
            };
            if ask {
                r.wake.send_replace(());
            }
            return r.lookups.clone();
        }
        let (found, lookups) = watch::channel(None);
        let (wake, woken) = watch::channel(());
        let installation = Arc::new(Mutex::new(installation));
        let refresh = Refresh {
            github: self.github.clone(),
            repo: repo.to_string(),
            label: label.to_string(),
            installation: installation.clone(),
            ttl: self.ttl,
        };
        tokio::spawn(refresh.run(found, woken));
        repos.insert(
            repo.to_string(),
            Refresher {
                lookups: lookups.clone(),
                wake,
                installation,
            },
        );
        lookups
    }
}

/// A repository's refresher: looks the switch up, says what it found, and again every `ttl`
/// or when asked, until the `KillSwitches` it serves is gone.
struct Refresh {
    github: Arc<dyn Actions>,
    repo: String,
    label: String,
    installation: Arc<Mutex<Option<u64>>>,
    ttl: Duration,
}

impl Refresh {
    async fn run(self, found: watch::Sender<Option<Lookup>>, mut woken: watch::Receiver<()>) {
        let mut before: Option<Lookup> = None;
        loop {
            let started = Instant::now();
            let state = self.look_up().await;
            log_change(&self.repo, before.as_ref().map(|l| &l.state), &state);
            let at = Utc::now();
            let failed = matches!(state, SwitchState::Unknown(_));
            let lookup = Lookup {
                started,
                finished: Instant::now(),
                since: match &before {
                    Some(b) if same_state(&b.state, &state) => b.since,
                    _ => at,
                },
                last_success: if failed {
                    before.as_ref().and_then(|b| b.last_success)
                } else {
                    Some(at)
                },
                at,
                state,
            };
            before = Some(lookup.clone());
            if found.send(Some(lookup)).is_err() {
                return;
            }
            let ttl = self.ttl;
            let due = async move {
                match ttl.is_zero() {
                    true => std::future::pending().await,
                    false => tokio::time::sleep(ttl).await,
                }
            };
            tokio::select! {
                _ = due => {}
                asked = woken.changed() => if asked.is_err() { return },
            }
        }
    }

    async fn look_up(&self) -> SwitchState {
        let installation = *self.installation.lock().expect("installation lock");
        let lookup = self
            .github
            .kill_switch(&self.repo, &self.label, installation);
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(Some(ks))) => SwitchState::On(ks),
            Ok(Ok(None)) => SwitchState::Off,
            Ok(Err(e)) => SwitchState::Unknown(format!("the lookup failed: {e:#}")),
            Err(_) => SwitchState::Unknown(format!(
                "the lookup took over {} s",
                LOOKUP_TIMEOUT.as_secs()
            )),
        }
    }
}

fn log_change(repo: &str, before: Option<&SwitchState>, now: &SwitchState) {
    if before == Some(now) {
        return;
    }
    match now {
        SwitchState::On(ks) => tracing::warn!(repo, %ks, "kill switch ON: restarts are held"),
        SwitchState::Unknown(why) => tracing::warn!(
            repo,
            reason = why,
            "kill switch state unknown: restarts are held until a lookup succeeds"
        ),
        SwitchState::Off if before.is_some() => {
            tracing::info!(repo, "kill switch off: restarts resume")
        }
        SwitchState::Off => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(started: Instant, took: Duration) -> Lookup {
        Lookup {
            started,
            finished: started + took,
            state: SwitchState::Off,
            at: Utc::now(),
            since: Utc::now(),
            last_success: None,
        }
    }

    #[test]
    fn with_a_ttl_the_last_lookup_stands_until_the_refresher_is_overdue() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let l = lookup(t0, Duration::from_secs(2));
        let after = |secs| t0 + Duration::from_secs(secs);
        assert!(stands(&l, after(3), ttl));
        assert!(stands(&l, after(2 + 60 + 120), ttl));
        assert!(
            !stands(&l, after(2 + 60 + 121), ttl),
            "the refresher is stuck"
        );
    }

    #[test]
    fn without_a_ttl_only_a_lookup_started_after_the_decision_stands() {
        let t0 = Instant::now();
        let l = lookup(t0 + Duration::from_millis(5), Duration::from_millis(1));
        assert!(stands(&l, t0, Duration::ZERO));
        assert!(!stands(&l, t0 + Duration::from_millis(6), Duration::ZERO));
    }

    #[test]
    fn an_unknown_state_never_stands_a_decision_waits_for_a_lookup_of_its_own() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let failed = Lookup {
            state: SwitchState::Unknown("502".into()),
            ..lookup(t0, Duration::from_secs(1))
        };
        let asked = t0 + Duration::from_secs(2);
        assert!(!stands(&failed, asked, ttl));
        assert!(!answers(&failed, asked, ttl, false));
        // A lookup that started after the decision answers it, whatever it found.
        let again = Lookup {
            started: asked,
            ..failed.clone()
        };
        assert!(answers(&again, asked, ttl, false));
        // The very first lookup of a repository answers the decisions that waited for it.
        assert!(answers(&failed, asked, ttl, true));
        assert!(!answers(&failed, asked, Duration::ZERO, true));
    }

    #[test]
    fn restarts_are_held_while_the_switch_is_on_or_unknown() {
        assert_eq!(SwitchState::Off.hold_reason(), None);
        let on = SwitchState::On(KillSwitch {
            issue: 5,
            labelled_by: "oncall".into(),
            permission: "maintain".into(),
        });
        assert_eq!(
            on.hold_reason().unwrap(),
            "kill switch on: issue #5 labelled by @oncall (maintain)"
        );
        let unknown = SwitchState::Unknown("the lookup failed: 502".into());
        assert_eq!(
            unknown.hold_reason().unwrap(),
            "kill switch state unknown: the lookup failed: 502"
        );
    }

    #[test]
    fn the_view_says_what_holds_restarts_and_since_when() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let at = Utc::now();
        let ks = KillSwitch {
            issue: 9,
            labelled_by: "oncall".into(),
            permission: "admin".into(),
        };
        let on = Lookup {
            state: SwitchState::On(ks.clone()),
            since: at - chrono::Duration::minutes(5),
            last_success: Some(at),
            ..lookup(t0, Duration::from_secs(1))
        };
        let v = SwitchView::of("o/r", Some(&on), ttl);
        assert_eq!((v.state, v.holds_restarts, v.failing), ("on", true, false));
        assert_eq!(v.switch, Some(ks));
        assert_eq!(v.since, Some(at - chrono::Duration::minutes(5)));
        let unknown = Lookup {
            state: SwitchState::Unknown("the lookup failed: 502".into()),
            ..on.clone()
        };
        let v = SwitchView::of("o/r", Some(&unknown), ttl);
        assert_eq!(
            (v.state, v.holds_restarts, v.failing),
            ("unknown", true, true)
        );
        assert_eq!(v.reason.as_deref(), Some("the lookup failed: 502"));
        let none = SwitchView::of("o/r", None, ttl);
        assert_eq!((none.state, none.holds_restarts), ("not_looked_up", false));
        assert!(same_state(
            &SwitchState::Unknown("a".into()),
            &SwitchState::Unknown("b".into())
        ));
        assert!(!same_state(&SwitchState::Off, &on.state));
    }
}
