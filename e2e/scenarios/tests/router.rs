//! The MCP session router end to end on a real cluster (issue 17's proofs): the operator runs
//! it for the rollout, agents reach the rollout's Service (now the router's) from a pod, and
//! the servers hold their sessions in process. Each test prints the figures the README quotes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{
    Bed, blue_green, failed_calls, revision_of,
    router::{pod_get, record_split, routed_rollout},
    with_image,
};
use mcp_fixture::{
    agents::{AgentEra, AgentTransport, AgentsConfig},
    metrics::sample_sum,
};
use mcp_rollout::api::{RollbackReason, labels};
use serde_json::json;

/// Many short handshake-era sessions with streamed calls: enough new sessions at every step to
/// read the split from.
fn short_sessions(c: &mut AgentsConfig, transport: AgentTransport, seconds: f64) {
    c.duration = seconds;
    c.agents = 6;
    c.rate = 8.0;
    c.session_min = 0.3;
    c.session_max = 0.8;
    c.stream_share = 0.15;
    c.stream_seconds = 1.5;
    c.transport = transport;
    c.era = AgentEra::Handshake;
}

async fn wait_done(bed: &Bed, name: &str, revision: &str, within: Duration) {
    bed.wait(name, "promoted and drained", within, |r| {
        e2e::stable_is(r, revision) && r.status.as_ref().is_some_and(|s| s.drains.is_empty())
    })
    .await;
}

/// A canary 5 → 25 → 50 → 100 and then a blue-green flip, through the router, under
/// handshake-era agents on both transports with streamed calls: no session lost, no stream cut,
/// no call failed, and at each canary step the canary's share of new sessions within 2 points
/// of its weight. The same traffic through a plain Service (a twin rollout without the router)
/// runs beside it, and its losses are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_router_a_canary_and_a_flip_lose_no_session_and_split_new_sessions_by_weight() {
    let bed = Bed::start().await;
    // The plugin promotes each step: built before the rollout starts.
    let _ = e2e::bin_dir();
    let mut v1 = routed_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    // Each step holds until the test has counted enough new sessions at its weight, however
    // busy the machine (a timed soak saw 90 at 5% with three scenarios beside it).
    v1["spec"]["strategy"]["canary"]["steps"] = json!([
        {"setWeight": 5}, {"pause": {}}, {"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
        {"setWeight": 100}
    ]);
    let mut plain = v1.clone();
    plain["metadata"]["name"] = json!("plain");
    plain["spec"].as_object_mut().unwrap().remove("trafficRouting");
    bed.apply(&v1).await;
    bed.apply(&plain).await;
    bed.wait_healthy("docs").await;
    bed.wait_healthy("plain").await;
    bed.wait_router("docs", 2).await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    let r2 = revision_of(&v2);
    let v3 = blue_green(&with_image(&v2, "mcp-fixture:v2-compatible", &[("FIXTURE_SEED", "3")]), "3s", "10s");
    let r3 = revision_of(&v3);
    let (recorder, split) = record_split(&bed, "docs", &r2);
    let seconds = 240.0;
    let streamable = bed.agents("docs", |c| short_sessions(c, AgentTransport::StreamableHttp, seconds)).await;
    let legacy = bed.agents("docs", |c| short_sessions(c, AgentTransport::Sse, seconds)).await;
    let through_plain =
        bed.agents("plain", |c| short_sessions(c, AgentTransport::StreamableHttp, seconds)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    bed.apply(&v2).await;
    let mut plain_v2 = with_image(&plain, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&plain_v2).await;
    for weight in [5, 25, 50] {
        bed.wait("docs", "the canary paused at its step", Duration::from_secs(120), |r| {
            r.status.as_ref().is_some_and(|s| s.desired_weight == weight && s.effective_weight == weight)
        })
        .await;
        e2e::eventually("enough new sessions at this weight", Duration::from_secs(180), || async {
            split.lock().unwrap().by_weight.get(&weight.unsigned_abs()).is_some_and(|(_, all)| *all >= 150.0)
        })
        .await;
        let (ok, out) = bed.cli(&["promote", "docs"]).await;
        assert!(ok, "promote: {out}");
        // The twin behind the plain Service follows as it can: it only shows what the same
        // traffic loses there.
        let _ = bed.cli(&["promote", "plain"]).await;
    }
    wait_done(&bed, "docs", &r2, Duration::from_secs(180)).await;
    let canary_secs = started.elapsed().as_secs_f64();
    recorder.abort();
    let started = Instant::now();
    bed.apply(&v3).await;
    plain_v2 = blue_green(
        &with_image(&plain_v2, "mcp-fixture:v2-compatible", &[("FIXTURE_SEED", "3")]),
        "3s",
        "10s",
    );
    bed.apply(&plain_v2).await;
    wait_done(&bed, "docs", &r3, Duration::from_secs(180)).await;
    let flip_secs = started.elapsed().as_secs_f64();
    let (streamable, legacy, through_plain) =
        (streamable.await.unwrap(), legacy.await.unwrap(), through_plain.await.unwrap());

    let split = split.lock().unwrap().clone();
    println!("new sessions by canary weight in force (canary, all): {:?}", split.by_weight);
    let mut shares = Vec::new();
    for weight in [5, 25, 50] {
        let (share, sessions) =
            split.share(weight).unwrap_or_else(|| panic!("no sessions seen at {weight}%: {split:?}"));
        shares.push(format!("{weight}%: {share:.1}% of {sessions}"));
        assert!(sessions >= 150.0, "too few new sessions at {weight}% to judge the split: {sessions}");
        assert!(
            (share - f64::from(weight)).abs() <= 2.0,
            "{share:.1}% of new sessions on the canary at {weight}%"
        );
    }
    for (transport, report) in [("Streamable HTTP", &streamable), ("legacy SSE", &legacy)] {
        println!("router, {transport}: {}", report.summary());
        assert_eq!(report.sessions_lost, 0, "{transport}: {}", report.summary());
        assert_eq!(report.streams_cut, 0, "{transport}: {}", report.summary());
        assert_eq!(failed_calls(report), 0, "{transport}: {}", report.summary());
        assert!(report.streams_completed > 0 && report.by_server_version.len() == 3, "{}", report.summary());
    }
    println!("plain Service, same traffic, same run: {}", through_plain.summary());
    println!(
        "router: canary promoted and drained in {canary_secs:.1} s, blue-green flip done in {flip_secs:.1} s; \
         canary share of new sessions per step: {}; sessions lost: {} (Streamable HTTP) and {} (legacy SSE) \
         through the router, {} through the plain Service",
        shares.join(", "),
        streamable.sessions_lost,
        legacy.sessions_lost,
        through_plain.sessions_lost
    );
}

/// A canary that starts failing 30% of its calls after a while is rolled back automatically
/// while handshake-era sessions (both transports, streamed calls) are open on it: the router
/// evacuates them — each one's next request is 404 and it starts again on stable — with no
/// stream cut and no call failed, and the canary leaves once nothing is in flight on it (long
/// before drain.max).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_rollback_through_the_router_evacuates_the_canarys_sessions() {
    let bed = Bed::start().await;
    let mut v1 = routed_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["strategy"]["canary"]["steps"] =
        json!([{"setWeight": 50}, {"pause": {"duration": "90s"}}, {"setWeight": 100}]);
    v1["spec"]["drain"] = json!({"min": "3s", "max": "60s"});
    bed.deploy_routed(&v1).await;
    // Sessions must be open on the canary when it is rolled back, whatever the machine's pace:
    // the canary is healthy for its first 40 s (it takes sessions, passes probes and gates) and
    // then fails 30% of its calls. 16 agents starting a 20–30 s session every ~25 s, half of
    // them on the canary: ~8 open there at the rollback. (Failing from the start, it was
    // rolled back by its probe before any session reached it: seen twice, 0 open.)
    let long_sessions = |c: &mut AgentsConfig, transport| {
        c.duration = 100.0;
        c.agents = 8;
        c.rate = 3.0;
        // Sessions long enough to span the rollback: one open on the canary then makes another
        // request after the evacuation (5–10 s sessions could all end on their own first: seen
        // once on the local cluster, 4 open on the canary and none moved).
        c.session_min = 20.0;
        c.session_max = 30.0;
        c.stream_share = 0.3;
        c.stream_seconds = 2.0;
        c.transport = transport;
        // A session is pinned to its pod, so an agent retries a failed call on the same
        // failing canary: with 5 retries a call fails for good with chance 0.3^6 ≈ 7e-4, a few
        // percent over the ~40 calls made there once it fails (seen once in CI: 1 tool error).
        // The scenario judges the evacuation, not the canary's injected faults: with 12
        // retries that chance is 0.3^13 ≈ 2e-7 per call.
        c.max_retries = 12;
    };
    let streamable = bed.agents("docs", |c| long_sessions(c, AgentTransport::StreamableHttp)).await;
    let legacy = bed.agents("docs", |c| long_sessions(c, AgentTransport::Sse)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2 = with_image(
        &v1,
        "mcp-fixture:v2-compatible",
        &[("FIXTURE_ERROR_RATE", "0.3"), ("FIXTURE_ERRORS_AFTER_SECONDS", "40")],
    );
    let r2 = revision_of(&v2);
    bed.apply(&v2).await;

    // The canary's open sessions, as the routers count them, up to the rollback.
    let mut on_canary = 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    let rolled_back = loop {
        let rollout = bed.get("docs").await;
        if rollout.status.as_ref().is_some_and(|s| s.rollback.is_some()) {
            break rollout;
        }
        let states = bed.router_states("docs").await;
        let open: u64 = states.values().filter_map(|s| s.revisions.get(&r2)).map(|l| l.sessions).sum();
        on_canary = on_canary.max(open);
        assert!(Instant::now() < deadline, "no rollback within 150 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let rollback_at = Instant::now();
    let rollback = rolled_back.status.unwrap().rollback.unwrap();
    // Whichever automatic trigger saw the failures first: the error-rate check, or the probe's
    // tool call meeting the injected faults three times running.
    assert!(
        matches!(rollback.reason, RollbackReason::AnalysisFailed | RollbackReason::ProbeFailed),
        "{rollback:?}"
    );
    bed.wait("docs", "the canary evacuated", Duration::from_secs(60), |r| {
        r.status.as_ref().is_some_and(|s| s.drains.is_empty())
    })
    .await;
    let evacuated_secs = rollback_at.elapsed().as_secs_f64();
    // Events are recorded after the status that ends the drain is written: wait for it rather
    // than read once (seen: the drain list empty, the DrainFinished event not listed yet).
    let drain_finished = || async {
        bed.events("docs").await.iter().any(|(reason, note)| reason == "DrainFinished" && note.contains(&r2))
    };
    e2e::eventually("the DrainFinished event", Duration::from_secs(20), drain_finished).await;
    let events = bed.events("docs").await;
    let finished = events
        .iter()
        .find(|(reason, note)| reason == "DrainFinished" && note.contains(&r2))
        .map(|(_, note)| note.clone())
        .unwrap_or_default();
    assert!(finished.contains("evacuated: the router carries no call or stream"), "{events:?}");
    let (streamable, legacy) = (streamable.await.unwrap(), legacy.await.unwrap());
    for (transport, report) in [("Streamable HTTP", &streamable), ("legacy SSE", &legacy)] {
        println!("{transport}: {}", report.summary());
        assert_eq!(report.streams_cut, 0, "{transport}: {}", report.summary());
        assert_eq!(failed_calls(report), 0, "{transport}: {}", report.summary());
        assert_eq!(report.reinitializations, report.sessions_lost, "every evacuated session started again");
    }
    let lost = streamable.sessions_lost + legacy.sessions_lost;
    assert!(
        on_canary > 0 && lost > 0,
        "sessions were open on the canary at the rollback ({on_canary}), and moved ({lost})"
    );
    println!(
        "router rollback ({:?}): {on_canary} session(s) open on the canary before it; evacuated (canary removed) \
         {evacuated_secs:.1} s after the rollback; {lost} session(s) started again on stable; 0 streams cut",
        rollback.reason
    );
}

/// One of the two router pods SIGKILLed mid-canary: sessions live in the servers and their
/// tokens name their pod, so the other replica (or the restarted one) routes them on: no
/// session is lost. (Requests in flight through the killed router are cut with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_pod_killed_mid_rollout_loses_no_session() {
    let bed = Bed::start().await;
    let v1 = routed_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    bed.deploy_routed(&v1).await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 90.0;
            c.agents = 6;
            c.rate = 5.0;
            c.session_min = 3.0;
            c.session_max = 6.0;
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    bed.wait("docs", "the canary at 25%", Duration::from_secs(90), |r| {
        r.status.as_ref().is_some_and(|s| s.desired_weight >= 25)
    })
    .await;
    let states = bed.router_states("docs").await;
    let (busiest, state) = states
        .iter()
        .max_by_key(|(_, s)| s.revisions.values().map(|l| l.sessions).sum::<u64>())
        .expect("router replicas");
    let open: u64 = state.revisions.values().map(|l| l.sessions).sum();
    bed.real.kill_container(&bed.client, &bed.namespace, busiest, "router").await;
    wait_done(&bed, "docs", &revision_of(&v2), Duration::from_secs(180)).await;
    let report = traffic.await.unwrap();
    println!("router pod {busiest} SIGKILLed with {open} session(s) counted on it: {}", report.summary());
    assert_eq!(report.sessions_lost, 0, "{}", report.summary());
    let pods = bed.router_pods("docs").await;
    let restarts: i32 = pods
        .iter()
        .flat_map(|p| p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default())
        .map(|c| c.restart_count)
        .sum();
    assert!(restarts >= 1, "the router container was killed and restarted");
}

/// A server with no metrics at all, gated only on what the router measured from its traffic
/// (`analysis.source: Router`): a canary failing 10% of its calls is rolled back by the
/// error-rate check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_metrics_is_gated_on_the_routers_measurements() {
    let bed = Bed::start().await;
    let mut v1 =
        routed_rollout("docs", "mcp-fixture:v1", &[("FIXTURE_METRICS", "false")], &bed.prometheus_url());
    v1["spec"]["template"]["metadata"].as_object_mut().unwrap().remove("annotations");
    v1["spec"]["analysis"]["source"] = json!("Router");
    v1["spec"]["strategy"]["canary"]["steps"] =
        json!([{"setWeight": 25}, {"pause": {"duration": "90s"}}, {"setWeight": 100}]);
    // The analysis alone judges the canary: a probe's tool call meets the injected failures
    // too, and three in a row (on one of three pods) once rolled it back first (seen in CI).
    v1["spec"]["probe"].as_object_mut().unwrap().remove("toolCall");
    bed.deploy_routed(&v1).await;
    let pod = bed.pods("docs").await.into_iter().next().unwrap();
    let name = kube::ResourceExt::name_any(&pod);
    assert!(
        pod_get(&bed.client, &bed.namespace, &name, 8080, "/metrics").await.is_none(),
        "the server has no metrics"
    );
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 90.0;
            c.era = AgentEra::Stateless;
            c.rate = 8.0;
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let v2 = with_image(
        &v1,
        "mcp-fixture:v2-compatible",
        &[("FIXTURE_METRICS", "false"), ("FIXTURE_ERROR_RATE", "0.1")],
    );
    bed.apply(&v2).await;
    let rolled_back = bed
        .wait("docs", "the failing canary rolled back", Duration::from_secs(150), |r| {
            r.status.as_ref().is_some_and(|s| s.rollback.is_some())
        })
        .await;
    let secs = started.elapsed().as_secs_f64();
    traffic.abort();
    let status = rolled_back.status.unwrap();
    let rollback = status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::AnalysisFailed, "{rollback:?}");
    assert_eq!(rollback.check.as_deref(), Some("errorRate"), "{rollback:?}");
    let routed = bed.router_metrics("docs").await.into_values().collect::<Vec<_>>().join("\n");
    let r2 = revision_of(&v2);
    let errors = sample_sum(&routed, "mcp_router_tool_call_errors_total", &[("revision", r2.as_str())]);
    let calls = sample_sum(&routed, "mcp_router_tool_calls_total", &[("revision", r2.as_str())]);
    println!(
        "no server metrics, router-gated: rolled back {secs:.1} s after apply ({}), the router counted {errors} \
         failed of {calls} canary calls",
        rollback.message
    );
    assert!(errors > 0.0 && calls > errors, "the router measured the canary's failures: {errors} of {calls}");
    assert_ne!(status.stable_revision, Some(r2), "the failing canary never became stable");
}

/// A tool-scoped canary: the step's weight is 0 and `search_documents` is routed to the canary
/// at 100%: stateless calls of that tool reach the canary, and no other tool's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_route_sends_only_that_tools_calls_to_the_canary() {
    let bed = Bed::start().await;
    let mut v1 = routed_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["trafficRouting"]["mcpRouter"]["toolRoutes"] =
        json!([{"tool": "search_documents", "weight": 100}]);
    v1["spec"]["strategy"]["canary"]["steps"] = json!([{"setWeight": 0}, {"pause": {}}]);
    v1["spec"].as_object_mut().unwrap().remove("analysis");
    bed.deploy_routed(&v1).await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    let r2 = revision_of(&v2);
    bed.apply(&v2).await;
    // The canary in rotation (probed) and in every replica's table as a backend taking work.
    e2e::eventually("a canary pod in the routers' rotation", Duration::from_secs(90), || async {
        let canary: Vec<String> = bed
            .pods("docs")
            .await
            .iter()
            .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION)) == Some(&r2))
            .map(kube::ResourceExt::name_any)
            .collect();
        let states = bed.router_states("docs").await;
        states.len() == 2 && states.values().all(|s| s.serving.iter().any(|p| canary.contains(p)))
    })
    .await;
    let report = bed
        .agents("docs", |c| {
            c.duration = 15.0;
            c.era = AgentEra::Stateless;
            c.rate = 10.0;
            c.stream_share = 0.0;
        })
        .await
        .await
        .unwrap();
    let canary_pod = bed
        .pods("docs")
        .await
        .into_iter()
        .find(|p| p.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION)) == Some(&r2))
        .unwrap();
    let metrics =
        pod_get(&bed.client, &bed.namespace, &kube::ResourceExt::name_any(&canary_pod), 8080, "/metrics")
            .await
            .unwrap();
    let calls = |tool: &str| sample_sum(&metrics, "mcp_tool_call_duration_seconds_count", &[("tool", tool)]);
    let (search, get, list) = (calls("search_documents"), calls("get_document"), calls("list_documents"));
    println!(
        "tool route: the canary pod served search_documents {search}, get_document {get}, list_documents {list}; {}",
        report.summary()
    );
    assert_eq!(failed_calls(&report), 0, "{}", report.summary());
    assert!(search > 20.0, "the routed tool's calls reached the canary: {search}");
    assert_eq!((get, list), (0.0, 0.0), "no other tool's call reached the canary");
    assert_eq!(bed.get("docs").await.status.unwrap().desired_weight, 0, "the step's own weight stayed 0");
}

/// The router's own rollout (its Deployment's template changed: a new resource request) under
/// handshake-era agents with streamed calls: old router pods stop taking connections after a
/// pause for the endpoints, finish the streams they carry, and the sessions' tokens let the new
/// pods take their next requests: no stream cut, no session lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_own_rollout_cuts_no_stream_and_loses_no_session() {
    let bed = Bed::start().await;
    let v1 = routed_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    bed.deploy_routed(&v1).await;
    let before: Vec<String> = bed.router_pods("docs").await.iter().map(kube::ResourceExt::name_any).collect();
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 60.0;
            c.agents = 6;
            c.rate = 5.0;
            c.session_min = 3.0;
            c.session_max = 6.0;
            c.stream_share = 0.3;
            c.stream_seconds = 3.0;
        })
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut resized = v1.clone();
    resized["spec"]["trafficRouting"]["mcpRouter"]["resources"] =
        json!({"requests": {"cpu": "60m", "memory": "64Mi"}});
    bed.apply(&resized).await;
    e2e::eventually("the router's pods replaced", Duration::from_secs(120), || async {
        let now: Vec<String> =
            bed.router_pods("docs").await.iter().map(kube::ResourceExt::name_any).collect();
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    })
    .await;
    let report = traffic.await.unwrap();
    println!("the router's own rollout under traffic: {}", report.summary());
    assert_eq!(report.streams_cut, 0, "{}", report.summary());
    assert_eq!(report.sessions_lost, 0, "{}", report.summary());
    assert!(report.streams_completed > 10, "streamed calls ran across it: {}", report.summary());
}
