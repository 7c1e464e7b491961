//! GitHub's clock as seen from ours. Every answer carries a `Date` header; the difference
//! between it and our clock when the answer came is the offset. Where our times are compared
//! with GitHub's (a run's `created_at` against when a restart was requested), the comparison
//! is corrected by it: a clock a few minutes fast must not make the run GitHub just created
//! look too old to belong to the restart.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The offset of GitHub's clock from ours (GitHub's time minus ours), from the latest answer.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    seen: AtomicBool,
}

impl Clock {
    /// Notes GitHub's `Date` header of an answer that came `now` (our clock).
    pub fn observe(&self, headers: &http::HeaderMap, now: DateTime<Utc>) {
        if let Some(offset) = offset_from(headers, now) {
            let before = self
                .offset_ms
                .swap(offset.num_milliseconds(), Ordering::Relaxed);
            self.seen.store(true, Ordering::Relaxed);
            if (before - offset.num_milliseconds()).abs() > 30_000 {
                tracing::warn!(
                    offset_ms = offset.num_milliseconds(),
                    "GitHub's clock differs from ours; times compared with GitHub's are corrected"
                );
            }
        }
    }

    /// GitHub's time minus ours (zero until an answer with a `Date` header came).
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// The offset, once an answer with a `Date` header has come (`None` before).
    pub fn observed(&self) -> Option<chrono::Duration> {
        self.seen.load(Ordering::Relaxed).then(|| self.offset())
    }
}

/// GitHub's time minus ours, from a `Date` header (`Sun, 06 Nov 1994 08:49:37 GMT`). The
/// header has whole seconds, truncated: half a second is added back.
pub fn offset_from(headers: &http::HeaderMap, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let date = headers.get(http::header::DATE)?.to_str().ok()?;
    let theirs = DateTime::parse_from_rfc2822(date).ok()?.with_timezone(&Utc);
    Some(theirs + chrono::Duration::milliseconds(500) - now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::DATE, s.parse().unwrap());
        h
    }

    #[test]
    fn the_offset_is_github_s_date_minus_our_clock() {
        let ours = DateTime::parse_from_rfc3339("2025-06-01T12:03:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        // Our clock is 3 minutes fast: GitHub says 12:00:00.
        let h = date("Sun, 01 Jun 2025 12:00:00 GMT");
        let offset = offset_from(&h, ours).unwrap();
        assert_eq!(offset.num_milliseconds(), -179_750);
        let clock = Clock::default();
        assert_eq!(clock.offset(), chrono::Duration::zero());
        assert_eq!(clock.observed(), None);
        clock.observe(&h, ours);
        assert_eq!(clock.observed(), Some(offset));
        assert_eq!(clock.offset(), offset);
        // An answer without a (readable) date changes nothing.
        clock.observe(&date("yesterday"), ours);
        clock.observe(&http::HeaderMap::new(), ours);
        assert_eq!(clock.offset(), offset);
    }
}
