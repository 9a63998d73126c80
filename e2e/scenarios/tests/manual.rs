//! Manual control through `kubectl-mcprollout` (issue 10 scenario 5): promote at an indefinite
//! pause, abort mid-rollout, retry after the abort.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Bed, fixture_rollout, revision_of, with_image};
use mcp_fixture::agents::AgentEra;
use mcp_rollout::api::{Phase, RollbackReason};
use serde_json::json;

fn at_pause(r: &mcp_rollout::api::McpRollout) -> bool {
    r.status.as_ref().is_some_and(|s| s.current_step_index == Some(1) && s.phase == Some(Phase::Paused))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_abort_and_retry_from_the_command_line() {
    let bed = Bed::start().await;
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["strategy"] =
        json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]}});
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 90.0;
            c.era = AgentEra::Stateless;
        })
        .await;

    // Promote at an indefinite pause.
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    bed.wait("docs", "paused at the indefinite step", Duration::from_secs(60), at_pause).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(at_pause(&bed.get("docs").await), "an indefinite pause waits");
    let (ok, out) = bed.cli(&["promote", "docs"]).await;
    assert!(ok, "{out}");
    bed.wait("docs", "promoted", Duration::from_secs(60), |r| e2e::stable_is(r, &revision_of(&v2))).await;

    // Abort mid-rollout, then retry.
    let v3 = with_image(&v1, "mcp-fixture:v2-compatible", &[("FIXTURE_LATENCY_MS", "1")]);
    bed.apply(&v3).await;
    bed.wait("docs", "v3 paused", Duration::from_secs(60), at_pause).await;
    let (ok, out) = bed.cli(&["abort", "docs"]).await;
    assert!(ok, "{out}");
    let aborted = bed
        .wait("docs", "aborted", Duration::from_secs(30), |r| {
            r.status.as_ref().is_some_and(|s| s.rollback.is_some() && s.canary_revision.is_none())
        })
        .await;
    let rollback = aborted.status.unwrap().rollback.unwrap();
    assert_eq!(rollback.reason, RollbackReason::Aborted);
    assert_eq!(rollback.revision, revision_of(&v3));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(bed.get("docs").await.status.unwrap().canary_revision.is_none(), "an aborted revision stays out");
    let (ok, out) = bed.cli(&["retry", "docs"]).await;
    assert!(ok, "{out}");
    bed.wait("docs", "v3 retried up to the pause", Duration::from_secs(60), |r| {
        at_pause(r)
            && r.status
                .as_ref()
                .is_some_and(|s| s.canary_revision.as_deref() == Some(revision_of(&v3).as_str()))
    })
    .await;
    let (ok, out) = bed.cli(&["promote", "docs", "--full"]).await;
    assert!(ok, "{out}");
    bed.wait("docs", "v3 promoted", Duration::from_secs(60), |r| e2e::stable_is(r, &revision_of(&v3))).await;

    // `list`, at the kubeconfig's own context by name, and at one it does not have.
    let kubeconfig: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&bed.kubeconfig).unwrap()).unwrap();
    let context = kubeconfig["current-context"].as_str().unwrap().to_owned();
    let (ok, listed) = bed.cli(&["list", "--context", &context]).await;
    assert!(ok, "{listed}");
    let row = listed.lines().find(|l| l.starts_with("docs ")).unwrap_or_else(|| panic!("{listed}"));
    for cell in ["Healthy", "0%/0%", revision_of(&v3).as_str()] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    let (ok, _) = bed.cli(&["list", "--context", "no-such-context"]).await;
    assert!(!ok, "an unknown context is an error");

    // `restart`: a new revision of the same pods, through the steps (and the pause) as any.
    let (ok, out) = bed.cli(&["restart", "docs"]).await;
    assert!(ok, "{out}");
    let restarted = bed.get("docs").await;
    let revision = mcp_rollout::api::revision_of(&restarted.spec.template);
    assert!(out.contains(&revision), "{out}");
    assert_ne!(revision, revision_of(&v3));
    bed.wait("docs", "the restart paused at the indefinite step", Duration::from_secs(60), at_pause).await;
    let (ok, out) = bed.cli(&["promote", "docs", "--full"]).await;
    assert!(ok, "{out}");
    bed.wait("docs", "restarted", Duration::from_secs(60), |r| e2e::stable_is(r, &revision)).await;
    // `status` shows the pods under their revision, with readiness and rotation.
    let (ok, shown) = bed.cli(&["status", "docs"]).await;
    assert!(ok, "{shown}");
    assert!(shown.contains(&format!("{revision} (stable, ")), "{shown}");
    assert!(shown.contains("ready, in rotation"), "{shown}");

    // `history`: every template that was stable, numbered in order; `undo` goes back to the
    // one before, through the steps like any change (and the pause), and it is then the newest.
    // Recorded by the reconcile that wrote the promotion, after its status: a moment later.
    e2e::eventually("the restart recorded as entry 4", Duration::from_secs(30), || async {
        let (ok, listed) = bed.cli(&["history", "docs"]).await;
        ok && listed.lines().any(|l| l.starts_with(&format!("4    {revision}")))
    })
    .await;
    let (ok, listed) = bed.cli(&["history", "docs"]).await;
    assert!(ok, "{listed}");
    let numbered: Vec<(String, String)> = listed
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split_whitespace();
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .collect();
    let stables = [revision_of(&v1), revision_of(&v2), revision_of(&v3), revision.clone()];
    let expected: Vec<(String, String)> =
        stables.iter().enumerate().map(|(i, r)| ((i + 1).to_string(), r.clone())).collect();
    assert_eq!(numbered, expected, "{listed}");
    let (ok, out) = bed.cli(&["undo", "docs"]).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("revision {} (history entry 3", revision_of(&v3))), "{out}");
    assert_eq!(mcp_rollout::api::revision_of(&bed.get("docs").await.spec.template), revision_of(&v3));
    bed.wait("docs", "the undo paused at the indefinite step", Duration::from_secs(60), at_pause).await;
    let (ok, out) = bed.cli(&["promote", "docs", "--full"]).await;
    assert!(ok, "{out}");
    bed.wait("docs", "undone", Duration::from_secs(60), |r| e2e::stable_is(r, &revision_of(&v3))).await;
    e2e::eventually("v3 recorded again as entry 5", Duration::from_secs(30), || async {
        let (ok, listed) = bed.cli(&["history", "docs"]).await;
        ok && listed.lines().any(|l| l.starts_with(&format!("5    {}", revision_of(&v3))))
    })
    .await;
    let (_, renumbered) = bed.cli(&["history", "docs"]).await;
    assert!(!renumbered.contains(&format!("3    {}", revision_of(&v3))), "{renumbered}");
    let (ok, out) = bed.cli(&["undo", "docs", "--to-revision", "1"]).await;
    assert!(ok, "{out}");
    assert_eq!(mcp_rollout::api::revision_of(&bed.get("docs").await.spec.template), revision_of(&v1));
    let (ok, out) = bed.cli(&["undo", "docs", "--to-revision", "9"]).await;
    assert!(!ok && out.contains("no history entry numbered 9"), "{out}");
    traffic.abort();
    let handled: Vec<String> =
        bed.events("docs").await.into_iter().filter(|(r, _)| r == "RequestHandled").map(|(_, n)| n).collect();
    // The second promote-full's event repeats the first one's message: the recorder counts it
    // on that event (a series) instead of making another.
    assert_eq!(
        handled,
        ["promote requested", "abort requested", "retry requested", "promote-full requested"],
        "each request acted on once"
    );
    println!(
        "manual: promote at an indefinite pause, abort, retry, promote --full, list, restart, history, undo: {handled:?}"
    );
}
