//! Recently seen delivery ids, bounded, to answer GitHub's redeliveries (which keep their
//! id) without work.

use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};

/// How many recent delivery ids are remembered.
pub const RECENT_IDS: usize = 100_000;

/// A delivery id as remembered, in 16 bytes (100,000 of them: ~4 MiB): GitHub's ids are
/// UUIDs, kept exactly; any other id is kept as the first 16 bytes of its SHA-256.
fn delivery_key(id: &str) -> u128 {
    let mut buf = uuid::Uuid::encode_buffer();
    match uuid::Uuid::try_parse(id) {
        // Only the canonical spelling, so that two spellings stay two ids.
        Ok(u) if *u.hyphenated().encode_lower(&mut buf) == *id => u.as_u128(),
        _ => {
            let digest = Sha256::digest(id.as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            u128::from_le_bytes(first)
        }
    }
}

/// Recently seen delivery ids, bounded (oldest forgotten first).
#[derive(Default)]
pub struct RecentIds {
    set: HashSet<u128>,
    order: VecDeque<u128>,
}

impl RecentIds {
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(&delivery_key(id))
    }
    /// False when the id was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        let key = delivery_key(id);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
    pub fn forget(&mut self, id: &str) {
        let key = delivery_key(id);
        if self.set.remove(&key) {
            self.order.retain(|x| *x != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = RecentIds::default();
        for i in 0..(RECENT_IDS + 10) {
            r.insert(&i.to_string());
        }
        assert!(!r.contains("0"));
        assert!(r.contains(&(RECENT_IDS + 9).to_string()));
        assert_eq!(r.set.len(), RECENT_IDS);
    }

    #[test]
    fn delivery_ids_are_kept_in_16_bytes_and_exact() {
        let mut r = RecentIds::default();
        let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        assert!(r.insert(id));
        assert_eq!(r.order[0], uuid::Uuid::parse_str(id).unwrap().as_u128());
        assert!(r.contains(id));
        assert!(!r.insert(id), "the same id twice");
        // Other spellings of the same UUID are other ids, as GitHub compares them.
        assert!(!r.contains(&id.to_uppercase()));
        assert!(!r.contains("72d3162ecc7811e381ab4c9367dc0958"));
        r.forget(id);
        assert!(!r.contains(id));
        assert!(r.insert("not-a-uuid"));
        assert!(r.contains("not-a-uuid"));
    }
}
