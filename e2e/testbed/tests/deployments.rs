#![allow(clippy::unwrap_used)]
//! The deployment and replica-set controllers, driven through the kube client. No kubelet runs
//! here, so the test plays it: it marks pods Ready (as the kubelet would on a passing readiness
//! probe) and watches the controllers act on that.

mod support;

use support::{connect, eventually};

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

fn deployment(image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "c", "image": image}]}}}
    }))
    .unwrap()
}

/// Plays the kubelet: every pod not yet Ready becomes Ready.
async fn make_ready(pods: &Api<Pod>) {
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready && pod.metadata.deletion_timestamp.is_none() {
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
            let _ = pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status)).await;
        }
    }
}

#[tokio::test]
async fn a_deployment_creates_a_replica_set_and_pods_and_reports_availability() {
    let (_plane, client) = connect().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("fixture:v1", 3)).await.unwrap();

    eventually("3 pods", || async { pods.list(&ListParams::default()).await.unwrap().items.len() == 3 })
        .await;
    let rs = replicasets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].labels()["pod-template-hash"].clone();
    assert_eq!(rs[0].name_any(), format!("web-{hash}"));
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        assert_eq!(pod.labels()["pod-template-hash"], hash);
        assert_eq!(pod.owner_references()[0].name, rs[0].name_any());
    }
    let status = deployments.get("web").await.unwrap().status.unwrap();
    assert_eq!(status.available_replicas.unwrap_or(0), 0);

    make_ready(&pods).await;
    eventually("available", || async {
        let status = deployments.get("web").await.unwrap().status.unwrap_or_default();
        status.available_replicas == Some(3)
            && status.conditions.unwrap_or_default().iter().any(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
    })
    .await;
    let deployment = deployments.get("web").await.unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(status.observed_generation, deployment.metadata.generation);
    assert_eq!(
        (status.replicas, status.updated_replicas, status.ready_replicas),
        (Some(3), Some(3), Some(3))
    );
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
    );
}

#[tokio::test]
async fn a_rolling_update_surges_one_pod_at_a_time_and_never_drops_below_desired() {
    let (_plane, client) = connect().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("fixture:v1", 3)).await.unwrap();
    eventually("3 pods", || async { pods.list(&ListParams::default()).await.unwrap().items.len() == 3 })
        .await;
    make_ready(&pods).await;
    eventually("available", || async {
        deployments.get("web").await.unwrap().status.and_then(|s| s.available_replicas) == Some(3)
    })
    .await;

    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "fixture:v2"}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    let most_pods = std::sync::atomic::AtomicUsize::new(0);
    let fewest_ready = std::sync::atomic::AtomicUsize::new(usize::MAX);
    eventually("the rollout to finish", || {
        let (pods, replicasets, deployments) = (pods.clone(), replicasets.clone(), deployments.clone());
        let (most, fewest) = (&most_pods, &fewest_ready);
        async move {
            let live: Vec<Pod> = pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            most.fetch_max(live.len(), std::sync::atomic::Ordering::SeqCst);
            fewest.fetch_min(ready, std::sync::atomic::Ordering::SeqCst);
            make_ready(&pods).await;
            let sets = replicasets.list(&ListParams::default()).await.unwrap().items;
            let status = deployments.get("web").await.unwrap().status.unwrap_or_default();
            sets.len() == 2
                && sets.iter().filter(|rs| rs.spec.replicas == Some(0)).count() == 1
                && status.updated_replicas == Some(3)
                && status.available_replicas == Some(3)
                && live.len() == 3
        }
    })
    .await;
    let (most_pods, fewest_ready) = (most_pods.into_inner(), fewest_ready.into_inner());
    assert!(most_pods <= 4, "maxSurge 25% of 3 is 1 pod: saw {most_pods}");
    assert!(fewest_ready >= 3, "maxUnavailable 25% of 3 is 0 pods: saw {fewest_ready} ready");
    for pod in pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let image = pod.spec.as_ref().unwrap().containers[0].image.clone();
        assert_eq!(image.as_deref(), Some("fixture:v2"));
    }
}

#[tokio::test]
async fn scale_down_removes_the_pod_with_the_lowest_deletion_cost_first() {
    let (_plane, client) = connect().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("fixture:v1", 3)).await.unwrap();
    eventually("3 pods", || async { pods.list(&ListParams::default()).await.unwrap().items.len() == 3 })
        .await;
    make_ready(&pods).await;
    let victim = pods.list(&ListParams::default()).await.unwrap().items[1].name_any();
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        let cost = if pod.name_any() == victim { "-100" } else { "100" };
        let patch =
            json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}});
        pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
    deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await
        .unwrap();
    eventually("the victim to go", || async {
        let live: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        live.len() == 2 && !live.contains(&victim)
    })
    .await;
}
