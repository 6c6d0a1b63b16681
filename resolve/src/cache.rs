//! A small cache of filtered upstream answers, positive and negative, with TTL expiry. It is
//! replaced with the policy, so nothing cached under an old policy is served under a new one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::chain::Answer;

/// Entries by type, then by canonical name: a lookup borrows the name asked (a `(String, type)`
/// key needed a `String` made for every lookup).
type Entries = HashMap<RecordType, HashMap<String, Entry>>;

struct Entry {
    answer: Answer,
    stored: Instant,
    expires: Instant,
}

/// Filtered answers by name and type.
pub struct Cache {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl Cache {
    /// An empty cache holding at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The answer for `name`/`qtype` at `now`, TTLs reduced by the time spent in the cache; `None`
    /// if absent or expired.
    pub fn get(&self, name: &str, qtype: RecordType, now: Instant) -> Option<Answer> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(&qtype)?.get(name)?;
        if now >= entry.expires {
            return None;
        }
        let elapsed = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for record in &mut answer.records {
            record.ttl = record.ttl.saturating_sub(elapsed).max(1);
        }
        Some(answer)
    }

    /// Records (kept and removed) an answer may have and still be stored: a name that answers
    /// with thousands of addresses (64 KiB over TCP holds some 4,000) would otherwise make each of
    /// the cache's entries a megabyte. Larger answers are served, just not stored.
    pub const MAX_RECORDS: usize = 32;

    /// Stores `answer` for its `cache_ttl`. Answers with TTL 0, or with more than
    /// [`Cache::MAX_RECORDS`] records, are not stored; when the cache is full, expired entries are
    /// swept, and if it is still full the answer is not stored.
    pub fn put(&self, name: &str, qtype: RecordType, answer: Answer, now: Instant) {
        if answer.cache_ttl == 0 || answer.records.len() + answer.removed.len() > Self::MAX_RECORDS
        {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if count(&entries) >= self.capacity {
            for by_name in entries.values_mut() {
                by_name.retain(|_, e| e.expires > now);
            }
            if count(&entries) >= self.capacity {
                return;
            }
        }
        let expires = now + Duration::from_secs(u64::from(answer.cache_ttl));
        entries.entry(qtype).or_default().insert(
            name.to_owned(),
            Entry {
                answer,
                stored: now,
                expires,
            },
        );
    }
}

/// Answers held, of every type.
fn count(entries: &Entries) -> usize {
    entries.values().map(HashMap::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    fn answer(ttl: u32) -> Answer {
        let record = Record::from_rdata(
            Name::from_ascii("a.test.").unwrap(),
            ttl,
            RData::A(A([192, 0, 2, 1].into())),
        );
        Answer {
            rcode: ResponseCode::NoError,
            records: vec![record],
            removed: Vec::new(),
            cache_ttl: ttl,
        }
    }

    #[test]
    fn entries_expire_with_their_ttl_and_age_their_records() {
        let cache = Cache::new(8);
        let t0 = Instant::now();
        cache.put("a.test", RecordType::A, answer(30), t0);
        let hit = cache
            .get("a.test", RecordType::A, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(hit.records[0].ttl, 20);
        assert!(cache.get("a.test", RecordType::AAAA, t0).is_none());
        assert!(
            cache
                .get("a.test", RecordType::A, t0 + Duration::from_secs(30))
                .is_none()
        );
    }

    #[test]
    fn negative_answers_are_cached_and_expire_too() {
        let cache = Cache::new(8);
        let t0 = Instant::now();
        let negative = Answer {
            rcode: ResponseCode::NXDomain,
            records: vec![],
            removed: Vec::new(),
            cache_ttl: 5,
        };
        cache.put("nx.test", RecordType::A, negative.clone(), t0);
        assert_eq!(
            cache.get("nx.test", RecordType::A, t0 + Duration::from_secs(4)),
            Some(negative)
        );
        assert!(
            cache
                .get("nx.test", RecordType::A, t0 + Duration::from_secs(5))
                .is_none()
        );
    }

    #[test]
    fn an_answer_of_too_many_records_is_not_stored() {
        let cache = Cache::new(8);
        let t0 = Instant::now();
        let mut large = answer(30);
        large.records = vec![large.records[0].clone(); Cache::MAX_RECORDS];
        cache.put("large.test", RecordType::A, large.clone(), t0);
        assert_eq!(
            cache.get("large.test", RecordType::A, t0),
            Some(large.clone())
        );
        large.removed.push(crate::chain::Removed::OffChain);
        cache.put("larger.test", RecordType::A, large, t0);
        assert!(cache.get("larger.test", RecordType::A, t0).is_none());
    }

    #[test]
    fn a_full_cache_sweeps_expired_entries_and_never_grows_past_capacity() {
        let cache = Cache::new(2);
        let t0 = Instant::now();
        cache.put("a", RecordType::A, answer(1), t0);
        cache.put("b", RecordType::A, answer(100), t0);
        cache.put("c", RecordType::A, answer(100), t0);
        assert!(
            cache.get("c", RecordType::A, t0).is_none(),
            "full: not stored"
        );
        let later = t0 + Duration::from_secs(2);
        cache.put("c", RecordType::A, answer(100), later);
        assert!(
            cache.get("c", RecordType::A, later).is_some(),
            "the expired entry made room"
        );
        assert_eq!(count(&cache.entries.lock().unwrap()), 2);
        cache.put("zero", RecordType::A, answer(0), t0);
        assert!(cache.get("zero", RecordType::A, t0).is_none());
    }
}
