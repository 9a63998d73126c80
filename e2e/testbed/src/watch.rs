//! Watches: newline-delimited JSON events from a resourceVersion, with bookmarks, a timeout,
//! and `410 Gone` (as an ERROR event, as a real server sends it) for a version too old.

use std::{collections::HashMap, time::Duration};

use axum::{
    body::{Body, Bytes},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    error::ApiError,
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    server::AppState,
    store::WatchEvent,
};

const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

pub fn stream(
    state: &AppState,
    rt: &ResourceType,
    namespace: Option<&str>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let requested = query.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let key = rt.key();
    let resource = key.clone();
    let api_version = rt.api_version();
    let kind = rt.kind.clone();
    let namespace = namespace.map(str::to_owned);
    let selected =
        move |object: &Value| labels.matches(&object["metadata"]["labels"]) && fields.matches(object);
    // The event type this watch sees: an object that starts or stops matching the selectors
    // is ADDED or DELETED for it; `None` when the change is not this watch's business.
    let matches = move |event: &WatchEvent| -> Option<&'static str> {
        if event.resource != key || namespace.as_deref().is_some_and(|n| n != event.namespace) {
            return None;
        }
        let now = selected(&event.object);
        let before = event.previous.as_ref().map(&selected);
        match (event.kind, before, now) {
            ("MODIFIED", Some(false), true) => Some("ADDED"),
            ("MODIFIED", Some(true), false) => Some("DELETED"),
            (_, _, true) => Some(event.kind),
            ("DELETED", Some(true), false) => Some("DELETED"),
            _ => None,
        }
    };
    // "" and "0": the current state as ADDED events first, then changes.
    let (initial, from) = match requested.as_str() {
        "" | "0" => store.list(rt, None, &LabelSelector::default(), &FieldSelector::default()),
        rv => (
            Vec::new(),
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(bytes)).await.is_ok() }
        };
        let (backlog, mut receiver) = match store.watch_from(from) {
            Ok(parts) => parts,
            Err(gone) => {
                let _ = send(line("ERROR", &gone.status())).await;
                return;
            }
        };
        for object in initial {
            let event = WatchEvent {
                rv: from,
                resource: resource.clone(),
                namespace: object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
                kind: "ADDED",
                object,
                previous: None,
            };
            if matches(&event).is_some() && !send(line("ADDED", &event.object)).await {
                return;
            }
        }
        let mut last = from;
        for event in backlog {
            last = event.rv;
            if let Some(kind) = matches(&event)
                && !send(line(kind, &event.object)).await
            {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let next = tokio::time::timeout(BOOKMARK_EVERY, receiver.recv());
            let outcome = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                    Ok(outcome) => outcome,
                    Err(_) => return,
                },
                None => next.await,
            };
            match outcome {
                Ok(Ok(event)) => {
                    if event.rv <= last {
                        continue;
                    }
                    last = event.rv;
                    if let Some(kind) = matches(&event)
                        && !send(line(kind, &event.object)).await
                    {
                        return;
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    let gone = ApiError::gone("the watch fell too far behind; start again from a list");
                    let _ = send(line("ERROR", &gone.status())).await;
                    return;
                }
                Ok(Err(RecvError::Closed)) => return,
                Err(_idle) => {
                    if bookmarks {
                        let rv = store.resource_version().max(last);
                        let bookmark = json!({"apiVersion": api_version, "kind": kind,
                                              "metadata": {"resourceVersion": rv.to_string()}});
                        if !send(line("BOOKMARK", &bookmark)).await {
                            return;
                        }
                    }
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Ok(([("content-type", "application/json")], body).into_response())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
