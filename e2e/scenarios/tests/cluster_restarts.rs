//! The cluster's own components restarting under a rollout, which only a real cluster can show:
//! the kubelet and the kube-apiserver restarted mid-canary, and etcd restarted while the old
//! revision drains. Each time the rollout completes, no step is taken twice, the weight never
//! goes back, and the agents see no failed call and no cut stream. Needs the local cluster
//! (`hack/cluster.sh restart`); elsewhere each scenario says so and returns.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{Bed, failed_calls, fixture_rollout, phase, revision_of, watch_status, with_image};
use mcp_fixture::agents::AgentEra;
use mcp_rollout::api::{McpRollout, Phase};

/// When in the rollout to restart the component.
enum Moment {
    /// Once the canary has traffic (its first weight step).
    MidCanary,
    /// Once the canary is promoted and the old revision drains.
    Draining,
}

async fn rollout_survives_a_restart_of(component: &str, moment: Moment) {
    let bed = Bed::start().await;
    if bed.real.local_dir.is_none() {
        println!("skipped: restarting {component} needs the local cluster (hack/cluster.sh)");
        return;
    }
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    // A drain long enough to restart etcd in: the window is measured, at least 20 s.
    v1["spec"]["drain"] = serde_json::json!({"min": "20s", "max": "40s"});
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 100.0;
            c.rate = 6.0;
            c.stream_share = 0.2;
            c.stream_seconds = 1.5;
            c.era = AgentEra::Stateless;
        })
        .await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    let r2 = revision_of(&v2);
    let (poller, timeline) = watch_status(&bed, "docs");
    bed.apply(&v2).await;
    let ready = |r: &McpRollout| match moment {
        Moment::MidCanary => {
            r.status.as_ref().is_some_and(|s| s.desired_weight > 0 && s.desired_weight < 100)
        }
        Moment::Draining => r
            .status
            .as_ref()
            .is_some_and(|s| s.stable_revision.as_deref() == Some(r2.as_str()) && !s.drains.is_empty()),
    };
    let before = bed.wait("docs", "the moment to restart", Duration::from_secs(120), ready).await;
    let restarted_at = Instant::now();
    let took = bed.real.restart_component(component).unwrap();
    let done = bed
        .wait("docs", "promoted and drained after the restart", Duration::from_secs(240), |r| {
            e2e::stable_is(r, &r2)
                && phase(r) == Some(Phase::Healthy)
                && r.status.as_ref().is_some_and(|s| s.drains.is_empty())
        })
        .await;
    let completed_after = restarted_at.elapsed().as_secs_f64();
    poller.abort();
    assert!(done.status.as_ref().unwrap().rollback.is_none(), "a restart is no reason to roll back");
    let weights = timeline.lock().unwrap().desired_weights();
    assert!(weights.windows(2).all(|w| w[1] >= w[0] || w[1] == 0), "no weight went back: {weights:?}");
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
    assert_eq!(failed_calls(&report), 0, "agents saw failed calls: {}", report.summary());
    assert_eq!(report.streams_cut, 0, "streams were cut: {}", report.summary());
    let status = before.status.unwrap();
    println!(
        "{component} restarted (in {:.1} s) at weight {} with {} drain(s) running; rollout completed {completed_after:.1} s \
         later, weights {weights:?}, {} steps, none twice; agents: {}",
        took.as_secs_f64(),
        status.desired_weight,
        status.drains.len(),
        steps.len(),
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_restart_mid_canary_changes_nothing_for_the_rollout_or_the_agents() {
    rollout_survives_a_restart_of("kubelet", Moment::MidCanary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_apiserver_restart_mid_canary_changes_nothing_for_the_rollout_or_the_agents() {
    rollout_survives_a_restart_of("kube-apiserver", Moment::MidCanary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_during_a_drain_changes_nothing_for_the_rollout_or_the_agents() {
    rollout_survives_a_restart_of("etcd", Moment::Draining).await;
}
