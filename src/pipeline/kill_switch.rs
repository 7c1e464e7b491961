//! The kill switch as the pipeline consults it. Decisions never look it up themselves: a
//! refresher per repository (a task of its own, started by the first possible restart
//! there) looks it up every `ttl`, and a decision reads the last state it found. Only when
//! that state cannot stand (the first decision for a repository, or the last lookup
//! failed) does a decision ask for a lookup and wait for it, at most `LOOKUP_WAIT`.
//!
//! It fails closed: while the state is unknown (a lookup failed or timed out, or none
//! finished in time) restarts are held, and the reason is recorded with each held restart.
//! With `ttl` zero every decision waits for a lookup of its own (tests).

use super::effects::Actions;
use crate::github::KillSwitch;
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
        let mut before = None;
        loop {
            let started = Instant::now();
            let state = self.look_up().await;
            log_change(&self.repo, before.as_ref(), &state);
            before = Some(state.clone());
            let lookup = Lookup {
                started,
                finished: Instant::now(),
                state,
            };
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
}
