//! Kubernetes Events about rollouts, through kube-runtime's `Recorder`: one per rollout.
//!
//! A `Recorder` keeps each event it published for six minutes (so that a true repeat becomes
//! a series of the first instead of a new object), and drops the old ones only when it
//! publishes again. One `Recorder` for every rollout therefore kept the events of deleted
//! rollouts, and at rest, the whole last wave's, until the next event anywhere: the heap of an
//! operator that saw 200 rollouts created and deleted five times in a row went from 12 to
//! 29 MiB in use (e2e `two_hundred_rollouts_created_and_deleted…`). A `Recorder` per rollout
//! goes with its rollout, and one idle longer than it keeps anything is dropped.
//!
//! A reconcile's events are published beside it, not inside it: each is a request to the API
//! server, a step makes two or three, and the reconcile waited for each while holding one of
//! the Controller's slots (a rollback's traffic change waited behind its `RolledBack` and
//! `DrainStarted`). A rollout's events still go out in the order they were decided: each batch
//! waits for the previous one of its rollout.
//!
//! At most `IN_FLIGHT` events are being published at once, whatever the number of rollouts:
//! unbounded (each batch went out as soon as its turn came), event creates were a third of
//! this operator's requests in a breach of 1,000 rollouts (30.9 of 95.8 per second) on an API
//! server that was the bottleneck, beside the writes that take the canaries out of rotation.
//! Under such load events lag (they are a record, not the mechanism); at ordinary rates they
//! do not.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};

use tracing::warn;

use super::workers::RolloutKey;

/// How long kube-runtime's `Recorder` keeps a published event (its `CACHE_TTL`): a recorder
/// idle for longer would fold nothing into a series.
const KEPT_BY_RECORDER: Duration = Duration::from_secs(6 * 60);

/// Event creates in flight at once, over all rollouts.
const IN_FLIGHT: usize = 4;

/// A rollout's recorder, when it last published, and whose turn it is to publish.
struct Recording {
    recorder: Recorder,
    last: Instant,
    /// Held by the batch publishing now; the next batch waits for it (tokio's mutex hands
    /// itself over first come, first served).
    turn: Arc<tokio::sync::Mutex<()>>,
}

pub struct Events {
    client: Client,
    reporter: Reporter,
    recorders: Mutex<HashMap<RolloutKey, Recording>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_in_flight(client, reporter, IN_FLIGHT)
    }

    fn with_in_flight(client: Client, reporter: Reporter, in_flight: usize) -> Self {
        Self {
            client,
            reporter,
            recorders: Mutex::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(in_flight)),
        }
    }

    fn recorders(&self) -> MutexGuard<'_, HashMap<RolloutKey, Recording>> {
        // Plain data: usable even if a holder panicked.
        self.recorders.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes `events` about the rollout `key` in the background, after the batches of its
    /// earlier reconciles, folding a repeat of one published in the last six minutes into its
    /// series. One that cannot be published is logged (events are best effort, as kube's).
    pub fn publish(&self, key: &RolloutKey, events: Vec<Event>, regarding: ObjectReference) {
        if events.is_empty() {
            return;
        }
        let (recorder, turn) = self.recorder(key, Instant::now());
        let rollout = key.1.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let _turn = turn.lock_owned().await;
            for event in &events {
                // Never closed: an error is impossible, and publishing anyway is harmless.
                let _slot = in_flight.acquire().await;
                if let Err(e) = recorder.publish(event, &regarding).await {
                    warn!(%rollout, reason = %event.reason, error = %e, "cannot publish event");
                }
            }
        });
    }

    /// The rollout's recorder and publishing turn, made if it has none, marked as publishing
    /// at `now`. A clone shares the events kept: the lock is not held while the API server
    /// answers.
    fn recorder(&self, key: &RolloutKey, now: Instant) -> (Recorder, Arc<tokio::sync::Mutex<()>>) {
        let mut recorders = self.recorders();
        let recording = recorders.entry(key.clone()).or_insert_with(|| Recording {
            recorder: Recorder::new(self.client.clone(), self.reporter.clone()),
            last: now,
            turn: Arc::default(),
        });
        recording.last = now;
        (recording.recorder.clone(), recording.turn.clone())
    }

    /// Drops the rollout's recorder if it has published nothing for longer than it keeps
    /// events (called at each reconcile: at rest nothing publishes).
    pub fn drop_if_idle(&self, key: &RolloutKey, now: Instant) {
        let mut recorders = self.recorders();
        if recorders.get(key).is_some_and(|r| now.saturating_duration_since(r.last) >= KEPT_BY_RECORDER) {
            recorders.remove(key);
        }
    }

    /// The rollout is gone: so are the events kept for it.
    pub fn forget(&self, key: &RolloutKey) {
        self.recorders().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> RolloutKey {
        ("ns".into(), name.into())
    }

    fn held(events: &Events) -> Vec<String> {
        let mut names: Vec<String> = events.recorders().keys().map(|(_, name)| name.clone()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_recorder_goes_with_its_rollout_or_once_it_would_fold_nothing() {
        // No request is made: nothing is published. The address is never dialled.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let events = Events::new(
            Client::try_from(config).unwrap(),
            Reporter { controller: "test".into(), instance: None },
        );
        let start = Instant::now();
        events.recorder(&key("a"), start);
        events.recorder(&key("b"), start);
        events.recorder(&key("a"), start + Duration::from_secs(60));

        // Five minutes after b's last event, six after a's first but five after its last.
        events.drop_if_idle(&key("a"), start + Duration::from_secs(6 * 60));
        events.drop_if_idle(&key("b"), start + Duration::from_secs(5 * 60));
        assert_eq!(held(&events), ["a", "b"]);

        events.drop_if_idle(&key("b"), start + KEPT_BY_RECORDER);
        assert_eq!(held(&events), ["a"]);

        events.forget(&key("a"));
        assert!(held(&events).is_empty());
    }
}

/// Background publishing against a small API server on loopback standing in for the real one
/// (a real kube-apiserver cannot be slowed down on purpose for one request).
#[cfg(test)]
mod ordering_tests {
    use std::sync::Arc;

    use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
    use kube::runtime::events::EventType;
    use serde_json::Value;

    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    /// Records each posted event's note and answers with it; the first is answered slowly.
    async fn post_event(State(seen): State<Seen>, Json(event): Json<Value>) -> (StatusCode, Json<Value>) {
        let note = event["note"].as_str().unwrap_or_default().to_owned();
        let first = {
            let mut seen = seen.lock().unwrap();
            seen.push(note);
            seen.len() == 1
        };
        if first {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (StatusCode::CREATED, Json(event))
    }

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: "StepAdvanced".into(),
            note: Some(note.into()),
            action: format!("StepAdvanced-{note}"),
            secondary: None,
        }
    }

    /// An API server on loopback answering event creates with `app`; a client of it.
    async fn serve(app: Router) -> (Client, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        (Client::try_from(config).unwrap(), server)
    }

    const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/{namespace}/events";

    fn reporter() -> Reporter {
        Reporter { controller: "test".into(), instance: None }
    }

    fn rollout_named(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("McpRollout".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }
    }

    #[tokio::test]
    async fn a_rollouts_batches_are_published_in_the_order_they_were_decided() {
        let seen = Seen::default();
        let (client, server) =
            serve(Router::new().route(EVENTS_PATH, post(post_event)).with_state(seen.clone())).await;
        let events = Events::new(client, reporter());
        let regarding = rollout_named("docs");
        let key = ("ns".to_owned(), "docs".to_owned());
        events.publish(&key, vec![event("a1"), event("a2"), event("a3")], regarding.clone());
        // The next reconcile's batch, decided while the first is still being answered.
        events.publish(&key, vec![event("b1"), event("b2")], regarding);
        for _ in 0..100 {
            if seen.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.abort();
        assert_eq!(*seen.lock().unwrap(), ["a1", "a2", "a3", "b1", "b2"]);
    }

    /// Requests being answered now, and the most seen at once.
    #[derive(Default)]
    struct Concurrency {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        answered: std::sync::atomic::AtomicUsize,
    }

    async fn post_slowly(
        State(c): State<Arc<Concurrency>>,
        Json(event): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = c.now.fetch_add(1, SeqCst) + 1;
        c.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.now.fetch_sub(1, SeqCst);
        c.answered.fetch_add(1, SeqCst);
        (StatusCode::CREATED, Json(event))
    }

    #[tokio::test]
    async fn many_rollouts_events_go_out_a_few_at_a_time() {
        use std::sync::atomic::Ordering::SeqCst;
        let concurrency = Arc::new(Concurrency::default());
        let (client, server) =
            serve(Router::new().route(EVENTS_PATH, post(post_slowly)).with_state(concurrency.clone())).await;
        let events = Events::with_in_flight(client, reporter(), 2);
        // Thirty rollouts rolled back at once, two events each.
        for i in 0..30 {
            let name = format!("r{i}");
            let regarding = rollout_named(&name);
            events.publish(&("ns".to_owned(), name), vec![event("rolled back"), event("drain")], regarding);
        }
        for _ in 0..200 {
            if concurrency.answered.load(SeqCst) == 60 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.abort();
        assert_eq!(concurrency.answered.load(SeqCst), 60, "every event is published");
        let most = concurrency.most.load(SeqCst);
        assert!((1..=2).contains(&most), "at most 2 in flight, seen {most}");
    }
}
