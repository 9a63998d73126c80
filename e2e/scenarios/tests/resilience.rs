//! The operator and its dependencies failing mid-rollout (issue scenarios 6 and 7): a SIGKILLed
//! operator picks the rollout up where its status says it is, and a Prometheus outage pauses
//! the rollout instead of promoting blind or rolling back.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{Bed, failed_calls, fixture_rollout, phase, revision_of, watch_status, with_image};
use mcp_fixture::agents::AgentEra;
use mcp_rollout::api::Phase;

/// Scenario 6: the leading operator's container is SIGKILLed at a random moment of a healthy
/// canary (the kubelet restarts it; the standby may take the Lease first): the rollout
/// completes, the weight never goes back, and no step is taken twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_rollout_resumes_without_flap_or_duplicate_step() {
    let mut bed = Bed::start().await;
    let v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 60.0;
            c.rate = 8.0;
            c.era = AgentEra::Stateless;
        })
        .await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    let (poller, timeline) = watch_status(&bed, "docs");
    bed.apply(&v2).await;
    // Somewhere between the first probe and the last soak.
    let kill_after = Duration::from_millis(fastrand::u64(1_000..14_000));
    tokio::time::sleep(kill_after).await;
    let before = bed.get("docs").await.status.unwrap();
    let killed = bed.kill_operator().await;
    bed.start_operator().await;
    let done = bed
        .wait("docs", "the canary promoted after the restart", Duration::from_secs(90), |r| {
            e2e::stable_is(r, &revision_of(&v2)) && phase(r) == Some(Phase::Healthy)
        })
        .await;
    poller.abort();
    assert!(done.status.unwrap().rollback.is_none());
    let weights = timeline.lock().unwrap().desired_weights();
    assert!(weights.windows(2).all(|w| w[1] >= w[0] || w[1] == 0), "the weight never went back: {weights:?}");
    let steps: Vec<String> = bed
        .events("docs")
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "StepAdvanced")
        .map(|(_, note)| note)
        .collect();
    let mut unique = steps.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), steps.len(), "a step was taken twice: {steps:?}");
    let report = traffic.await.unwrap();
    let failed = failed_calls(&report);
    assert_eq!(failed, 0, "{}", report.summary());
    println!(
        "scenario 6: operator {killed} SIGKILLed {:.1} s into the rollout (at step {:?}, weight {}); \
         completed with weights {weights:?}, {} steps, no duplicate; agents: {}",
        kill_after.as_secs_f64(),
        before.current_step_index,
        before.desired_weight,
        steps.len(),
        report.summary()
    );
}

/// Scenario 7: Prometheus stops mid-soak (its Deployment scaled to 0): the rollout pauses on
/// inconclusive analysis without moving the weight either way, and resumes when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outage_pauses_the_rollout_until_it_returns() {
    let bed = Bed::start().await;
    let v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 75.0;
            c.rate = 8.0;
            c.era = AgentEra::Stateless;
        })
        .await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    bed.wait("docs", "the canary at 25%", Duration::from_secs(60), |r| {
        r.status.as_ref().is_some_and(|s| s.desired_weight == 25)
    })
    .await;
    bed.real.scale_prometheus(&bed.client, 0).await;
    let stopped = Instant::now();
    let paused = bed
        .wait("docs", "paused on inconclusive analysis", Duration::from_secs(30), |r| {
            phase(r) == Some(Phase::Paused)
        })
        .await;
    let paused_after = stopped.elapsed().as_secs_f64();
    let message = paused.status.as_ref().unwrap().message.clone().unwrap_or_default();
    assert!(message.contains("Inconclusive"), "{message}");
    let (poller, timeline) = watch_status(&bed, "docs");
    tokio::time::sleep(Duration::from_secs(12)).await;
    poller.abort();
    let held = timeline.lock().unwrap().clone();
    assert_eq!(held.desired_weights(), vec![25], "the weight held while Prometheus was away");
    assert!(held.samples.iter().all(|s| s.4 == "Paused"), "paused throughout the outage");
    bed.real.scale_prometheus(&bed.client, 1).await;
    let resumed = Instant::now();
    let done = bed
        .wait("docs", "promoted after Prometheus returned", Duration::from_secs(90), |r| {
            e2e::stable_is(r, &revision_of(&v2))
        })
        .await;
    assert!(done.status.unwrap().rollback.is_none(), "an outage is not a reason to roll back");
    let report = traffic.await.unwrap();
    println!(
        "scenario 7: paused {paused_after:.1} s after Prometheus stopped ({message}); held at 25% for the outage; \
         promoted {:.1} s after it returned; agents: {}",
        resumed.elapsed().as_secs_f64(),
        report.summary()
    );
}
