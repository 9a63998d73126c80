//! What the router knows of the work it carries, per backend and revision: open sessions
//! (opened by an `initialize` or a legacy `GET /sse` through this router, or first seen on a
//! request with a valid token — a session another replica opened, or one from before a
//! restart), open SSE streams, requests in flight (a response not yet finished, or a legacy
//! call whose answer has not yet come on its session's stream), and last activity. A session
//! ends when it is deleted, its legacy stream closes, the backend no longer knows it (404), its
//! revision is evacuated, or it idles past the idle timeout. The table is bounded: past `max`
//! sessions the stalest is forgotten first (it is still routed by its token; only the count
//! misses it).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::token::Pin;

/// Legacy calls remembered per session while their answers are awaited; past this the oldest
/// is forgotten (its answer is then counted without its tool or latency).
const MAX_PENDING_PER_SESSION: usize = 256;

/// A legacy call forwarded and not yet answered on its session's stream.
#[derive(Clone, Debug)]
pub struct PendingCall {
    pub id: String,
    pub tool: String,
    pub started: Instant,
}

#[derive(Clone, Debug)]
struct Entry {
    backend: String,
    revision: String,
    /// When the session was opened (unix seconds, sealed in its token), if known.
    opened_unix: u64,
    last: Instant,
    pending: VecDeque<PendingCall>,
    /// Ended (evacuated) while calls were still awaited on its stream: kept only for them, no
    /// longer counted as a session, removed with its last awaited call.
    ended: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    streams: u64,
    in_flight: u64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<(String, String), Entry>,
    counts: HashMap<(String, String), Counts>,
}

/// Load of one revision or one backend, as the operator's drain reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    pub sessions: u64,
    pub streams: u64,
    /// Requests whose response has not finished, and legacy calls not yet answered.
    pub in_flight: u64,
}

impl Load {
    /// No session, stream or request left.
    pub fn is_idle(&self) -> bool {
        self.sessions == 0 && self.streams == 0 && self.in_flight == 0
    }
}

/// A session that ended: its revision and, when known, how long it lasted.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub revision: String,
    pub seconds: Option<f64>,
}

pub struct Sessions {
    inner: Mutex<Inner>,
    idle: Duration,
    max: usize,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn key(pin: &Pin) -> (String, String) {
    (pin.backend.clone(), pin.session.clone())
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self { inner: Mutex::default(), idle, max: max.max(1) }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session was opened, or a request of a known one went through.
    pub fn touch(&self, pin: &Pin, now: Instant) {
        let mut inner = self.lock();
        let key = key(pin);
        if let Some(entry) = inner.sessions.get_mut(&key) {
            if !entry.ended {
                entry.last = now;
            }
            return;
        }
        if inner.sessions.len() >= self.max {
            let stalest = inner.sessions.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                inner.sessions.remove(&k);
            }
        }
        inner.sessions.insert(
            key,
            Entry {
                backend: pin.backend.clone(),
                revision: pin.revision.clone(),
                opened_unix: pin.opened,
                last: now,
                pending: VecDeque::new(),
                ended: false,
            },
        );
    }

    /// Ends a session (deleted, gone on its backend, evacuated, its legacy stream closed). Its
    /// duration comes from the open time sealed in its token, so whichever replica sees the
    /// end measures all of it. `None` when it was not open here.
    pub fn close(&self, pin: &Pin) -> Option<Ended> {
        let entry = self.lock().sessions.remove(&key(pin))?;
        (!entry.ended).then(|| Ended {
            revision: entry.revision,
            seconds: seconds_since(entry.opened_unix, unix_now()),
        })
    }

    /// Forgets sessions idle past the timeout; each lasted until its last request.
    pub fn expire(&self, now: Instant) -> Vec<Ended> {
        let idle = self.idle;
        let now_unix = unix_now();
        let mut ended = Vec::new();
        self.lock().sessions.retain(|_, e| {
            let quiet = now.saturating_duration_since(e.last);
            if quiet < idle {
                return true;
            }
            let last_unix = now_unix.saturating_sub(quiet.as_secs());
            ended.push(Ended {
                revision: e.revision.clone(),
                seconds: seconds_since(e.opened_unix, last_unix),
            });
            false
        });
        ended
    }

    /// Ends every session of the given revisions (a rollback evacuates them); returns them.
    /// Legacy calls still awaited on a session's stream stay in flight until answered.
    pub fn close_revisions(&self, revisions: &std::collections::BTreeSet<String>) -> Vec<Ended> {
        let now_unix = unix_now();
        let mut ended = Vec::new();
        self.lock().sessions.retain(|_, e| {
            if !revisions.contains(&e.revision) || e.ended {
                return true;
            }
            ended.push(Ended {
                revision: e.revision.clone(),
                seconds: seconds_since(e.opened_unix, now_unix),
            });
            e.ended = true;
            !e.pending.is_empty()
        });
        ended
    }

    fn count(&self, backend: &str, revision: &str, change: impl FnOnce(&mut Counts)) {
        let mut inner = self.lock();
        let key = (backend.to_owned(), revision.to_owned());
        let counts = inner.counts.entry(key.clone()).or_default();
        change(counts);
        if counts.streams == 0 && counts.in_flight == 0 {
            inner.counts.remove(&key);
        }
    }

    pub fn stream_started(&self, backend: &str, revision: &str) {
        self.count(backend, revision, |c| c.streams += 1);
    }

    pub fn stream_ended(&self, backend: &str, revision: &str) {
        self.count(backend, revision, |c| c.streams = c.streams.saturating_sub(1));
    }

    pub fn request_started(&self, backend: &str, revision: &str) {
        self.count(backend, revision, |c| c.in_flight += 1);
    }

    pub fn request_ended(&self, backend: &str, revision: &str) {
        self.count(backend, revision, |c| c.in_flight = c.in_flight.saturating_sub(1));
    }

    /// Legacy calls posted on a session: their answers will come on its stream. Counted in
    /// flight until answered or the session ends.
    pub fn calls_posted(&self, pin: &Pin, calls: impl IntoIterator<Item = PendingCall>, now: Instant) {
        self.touch(pin, now);
        let mut inner = self.lock();
        let Some(entry) = inner.sessions.get_mut(&key(pin)) else { return };
        for call in calls {
            if entry.pending.len() >= MAX_PENDING_PER_SESSION {
                entry.pending.pop_front();
            }
            entry.pending.push_back(call);
        }
    }

    /// The legacy call a response on a session's stream answers, if this router posted it.
    pub fn call_answered(&self, pin: &Pin, id: &str) -> Option<PendingCall> {
        let mut inner = self.lock();
        let key = key(pin);
        let entry = inner.sessions.get_mut(&key)?;
        let at = entry.pending.iter().position(|c| c.id == id)?;
        let call = entry.pending.remove(at);
        if entry.ended && entry.pending.is_empty() {
            inner.sessions.remove(&key);
        }
        call
    }

    /// Legacy calls of a session still awaiting their answer here.
    pub fn pending_on(&self, pin: &Pin) -> usize {
        self.lock().sessions.get(&key(pin)).map_or(0, |e| e.pending.len())
    }

    /// Open sessions on one backend (the balancer's "fewest open sessions").
    pub fn open_on(&self, backend: &str) -> u64 {
        self.lock().sessions.values().filter(|e| e.backend == backend && !e.ended).count() as u64
    }

    /// Load per revision and per backend.
    pub fn loads(&self) -> (BTreeMap<String, Load>, BTreeMap<String, Load>) {
        let inner = self.lock();
        let mut revisions: BTreeMap<String, Load> = BTreeMap::new();
        let mut backends: BTreeMap<String, Load> = BTreeMap::new();
        for e in inner.sessions.values() {
            let open = u64::from(!e.ended);
            revisions.entry(e.revision.clone()).or_default().sessions += open;
            backends.entry(e.backend.clone()).or_default().sessions += open;
            let pending = e.pending.len() as u64;
            revisions.entry(e.revision.clone()).or_default().in_flight += pending;
            backends.entry(e.backend.clone()).or_default().in_flight += pending;
        }
        for ((backend, revision), c) in &inner.counts {
            for load in
                [revisions.entry(revision.clone()).or_default(), backends.entry(backend.clone()).or_default()]
            {
                load.streams += c.streams;
                load.in_flight += c.in_flight;
            }
        }
        (revisions, backends)
    }

    pub fn by_revision(&self) -> BTreeMap<String, Load> {
        self.loads().0
    }
}

#[allow(clippy::cast_precision_loss)]
fn seconds_since(opened_unix: u64, until_unix: u64) -> Option<f64> {
    (opened_unix > 0).then(|| until_unix.saturating_sub(opened_unix) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(backend: &str, revision: &str, session: &str) -> Pin {
        Pin { backend: backend.into(), revision: revision.into(), session: session.into(), opened: 0 }
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
        assert_eq!(s.by_revision()["r2"], Load { sessions: 1, streams: 1, in_flight: 0 });
        assert!(s.close(&pin("a", "r1", "1")).is_some());
        assert!(s.close(&pin("a", "r1", "1")).is_none(), "ended once");
        let expired = s.expire(t0 + Duration::from_secs(61));
        assert_eq!(expired.len(), 1);
        assert_eq!(s.by_revision().get("r1"), None, "one deleted, one idle");
        s.stream_ended("b", "r2");
        assert_eq!(s.by_revision()["r2"], Load { sessions: 1, streams: 0, in_flight: 0 });
    }

    #[test]
    fn durations_come_from_the_open_time_in_the_token() {
        let s = Sessions::new(Duration::from_secs(60), 100);
        let opened = Pin { opened: unix_now() - 42, ..pin("a", "r1", "1") };
        s.touch(&opened, Instant::now());
        let ended = s.close(&opened).unwrap();
        assert_eq!(ended.revision, "r1");
        assert!(ended.seconds.is_some_and(|d| (42.0..=44.0).contains(&d)), "{ended:?}");
        s.touch(&pin("a", "r1", "old-token"), Instant::now());
        assert_eq!(s.close(&pin("a", "r1", "old-token")).unwrap().seconds, None, "no open time known");
    }

    #[test]
    fn requests_in_flight_and_legacy_calls_awaiting_answers_count_as_load() {
        let s = Sessions::new(Duration::from_secs(60), 100);
        let now = Instant::now();
        let p = pin("a", "r1", "1");
        s.request_started("a", "r1");
        s.calls_posted(&p, [PendingCall { id: "7".into(), tool: "t".into(), started: now }], now);
        let (revisions, backends) = s.loads();
        assert_eq!(revisions["r1"], Load { sessions: 1, streams: 0, in_flight: 2 });
        assert_eq!(backends["a"], revisions["r1"]);
        assert_eq!(s.call_answered(&p, "8").map(|c| c.id), None, "not a call posted here");
        assert_eq!(s.call_answered(&p, "7").map(|c| c.tool), Some("t".to_owned()));
        s.request_ended("a", "r1");
        assert_eq!(s.by_revision()["r1"], Load { sessions: 1, streams: 0, in_flight: 0 });
        assert!(!s.by_revision()["r1"].is_idle());
        s.calls_posted(&p, [PendingCall { id: "9".into(), tool: "t".into(), started: now }], now);
        let evacuated = s.close_revisions(&["r1".to_owned()].into());
        assert_eq!(evacuated.len(), 1);
        assert_eq!(
            s.by_revision()["r1"],
            Load { sessions: 0, streams: 0, in_flight: 1 },
            "an evacuated session's awaited call is still in flight"
        );
        assert_eq!(s.pending_on(&p), 1);
        assert_eq!(s.open_on("a"), 0, "no longer an open session");
        assert!(s.call_answered(&p, "9").is_some());
        assert!(s.by_revision().is_empty(), "gone with its last awaited call");
        s.touch(&p, now);
        s.calls_posted(&p, [PendingCall { id: "10".into(), tool: "t".into(), started: now }], now);
        s.close_revisions(&["r1".to_owned()].into());
        assert!(s.close(&p).is_none(), "its end was already counted");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_stalest() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        s.touch(&pin("a", "r", "old"), t0);
        s.touch(&pin("a", "r", "mid"), t0 + Duration::from_secs(1));
        s.touch(&pin("a", "r", "new"), t0 + Duration::from_secs(2));
        assert_eq!(s.open_on("a"), 2);
        assert!(s.close(&pin("a", "r", "old")).is_none(), "old was already forgotten");
        let p = pin("a", "r", "new");
        let calls = (0..300).map(|i| PendingCall { id: i.to_string(), tool: "t".into(), started: t0 });
        s.calls_posted(&p, calls, t0);
        assert_eq!(s.pending_on(&p), MAX_PENDING_PER_SESSION);
    }
}
