//! What the router knows of the sessions and streams it carries: per backend and revision,
//! open sessions (opened by an `initialize` or a legacy `GET /sse` through this router, or first
//! seen on a request with a valid token — a session another replica opened, or one from before a
//! restart), open streams, and last activity. A session ends when it is deleted, its legacy
//! stream closes, or it idles past the idle timeout. The table is bounded: past `max` sessions
//! the stalest is forgotten first (it is still routed by its token; only the count misses it).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::token::Pin;

#[derive(Clone, Debug)]
struct Entry {
    backend: String,
    revision: String,
    last: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<(String, String), Entry>,
    /// Open streams per (backend, revision).
    streams: HashMap<(String, String), u64>,
}

/// Counts of one revision, as the operator's drain reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionLoad {
    pub sessions: u64,
    pub streams: u64,
}

pub struct Sessions {
    inner: Mutex<Inner>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self { inner: Mutex::default(), idle, max: max.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session was opened, or a request of a known one went through.
    pub fn touch(&self, pin: &Pin, now: Instant) {
        let mut inner = self.lock();
        let key = (pin.backend.clone(), pin.session.clone());
        if !inner.sessions.contains_key(&key) && inner.sessions.len() >= self.max {
            let stalest = inner.sessions.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                inner.sessions.remove(&k);
            }
        }
        inner
            .sessions
            .insert(key, Entry { backend: pin.backend.clone(), revision: pin.revision.clone(), last: now });
    }

    pub fn close(&self, pin: &Pin) {
        self.lock().sessions.remove(&(pin.backend.clone(), pin.session.clone()));
    }

    /// Forgets sessions idle past the timeout.
    pub fn expire(&self, now: Instant) {
        let idle = self.idle;
        self.lock().sessions.retain(|_, e| now.saturating_duration_since(e.last) < idle);
    }

    pub fn stream_started(&self, backend: &str, revision: &str) {
        *self.lock().streams.entry((backend.to_owned(), revision.to_owned())).or_default() += 1;
    }

    pub fn stream_ended(&self, backend: &str, revision: &str) {
        let mut inner = self.lock();
        let key = (backend.to_owned(), revision.to_owned());
        if let Some(n) = inner.streams.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.streams.remove(&key);
            }
        }
    }

    /// Open sessions on one backend (the balancer's "fewest open sessions").
    pub fn open_on(&self, backend: &str) -> u64 {
        self.lock().sessions.values().filter(|e| e.backend == backend).count() as u64
    }

    pub fn by_revision(&self) -> BTreeMap<String, RevisionLoad> {
        let inner = self.lock();
        let mut out: BTreeMap<String, RevisionLoad> = BTreeMap::new();
        for e in inner.sessions.values() {
            out.entry(e.revision.clone()).or_default().sessions += 1;
        }
        for ((_, revision), n) in &inner.streams {
            out.entry(revision.clone()).or_default().streams += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(backend: &str, revision: &str, session: &str) -> Pin {
        Pin { backend: backend.into(), revision: revision.into(), session: session.into() }
    }

    #[test]
    fn sessions_end_on_delete_or_idle_and_are_counted_per_pod_and_revision() {
        let s = Sessions::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        s.touch(&pin("a", "r1", "1"), t0);
        s.touch(&pin("a", "r1", "2"), t0);
        s.touch(&pin("b", "r2", "3"), t0 + Duration::from_secs(50));
        s.stream_started("b", "r2");
        assert_eq!((s.open_on("a"), s.open_on("b")), (2, 1));
        assert_eq!(s.by_revision()["r2"], RevisionLoad { sessions: 1, streams: 1 });
        s.close(&pin("a", "r1", "1"));
        s.expire(t0 + Duration::from_secs(61));
        assert_eq!(s.by_revision().get("r1"), None, "one deleted, one idle");
        s.stream_ended("b", "r2");
        assert_eq!(s.by_revision()["r2"], RevisionLoad { sessions: 1, streams: 0 });
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_stalest() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        s.touch(&pin("a", "r", "old"), t0);
        s.touch(&pin("a", "r", "mid"), t0 + Duration::from_secs(1));
        s.touch(&pin("a", "r", "new"), t0 + Duration::from_secs(2));
        assert_eq!(s.open_on("a"), 2);
        s.close(&pin("a", "r", "old"));
        assert_eq!(s.open_on("a"), 2, "old was already forgotten");
    }
}
