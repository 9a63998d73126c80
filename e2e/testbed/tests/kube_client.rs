#![allow(clippy::unwrap_used)]
//! Contract tests: the control plane driven by the real `kube` client (typed and dynamic APIs,
//! kube-runtime's watcher), as the operator will drive it.

mod support;

use support::connect;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::{DynamicObject, GroupVersionKind},
    discovery::{ApiResource, Discovery},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use testbed::ControlPlane;

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

fn error_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn crud_with_selectors_optimistic_concurrency_and_errors() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &configmap("a", json!({"app": "docs", "track": "stable"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    api.create(&PostParams::default(), &configmap("b", json!({"app": "docs", "track": "canary"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &configmap("c", json!({"app": "other"}))).await.unwrap();
    assert_eq!(
        error_code(api.create(&PostParams::default(), &configmap("a", json!({}))).await.unwrap_err()),
        409
    );

    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    };
    assert_eq!(names(api.list(&ListParams::default().labels("app=docs")).await.unwrap()), ["a", "b"]);
    assert_eq!(
        names(api.list(&ListParams::default().labels("app=docs,track notin (canary)")).await.unwrap()),
        ["a"]
    );
    assert_eq!(names(api.list(&ListParams::default().labels("!track")).await.unwrap()), ["c"]);
    assert_eq!(names(api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), ["b"]);
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(page.metadata.continue_.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(names(rest), ["c"]);

    let mut stale = created.clone();
    stale.data = Some([("k".to_owned(), "changed".to_owned())].into());
    let replaced = api.replace("a", &PostParams::default(), &stale).await.unwrap();
    assert_ne!(replaced.resource_version(), created.resource_version());
    assert_eq!(error_code(api.replace("a", &PostParams::default(), &stale).await.unwrap_err()), 409);

    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"extra": "1"}})))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap().len(), 2);
    let json_patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/extra"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(json_patched.data.unwrap().len(), 1);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(error_code(api.get("a").await.unwrap_err()), 404);
    let missing_namespace: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(
        error_code(
            missing_namespace.create(&PostParams::default(), &configmap("x", json!({}))).await.unwrap_err()
        ),
        404
    );

    let generated: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let generated = api.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() > 4);
}

#[tokio::test]
async fn generation_counts_spec_changes_only_and_status_is_a_subresource() {
    let (_plane, client) = connect().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &deployment).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = api
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let scaled = api
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    // Status through the main resource is ignored; through /status it lands without a bump.
    let ignored = api
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 9}})))
        .await
        .unwrap();
    assert_ne!(ignored.status.and_then(|s| s.replicas), Some(9));
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 3, "readyReplicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().ready_replicas, Some(3));
    assert_eq!(status.metadata.generation, Some(2));
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
}

#[tokio::test]
async fn server_side_apply_removes_dropped_fields_and_reports_conflicts() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let ci = PatchParams::apply("ci");
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
    let applied = api.patch("cfg", &ci, &Patch::Apply(&first)).await.unwrap();
    assert_eq!(applied.managed_fields().len(), 1);
    let second =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let applied = api.patch("cfg", &ci, &Patch::Apply(&second)).await.unwrap();
    assert_eq!(applied.data.clone().unwrap().len(), 1, "{applied:?}");

    let rival =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "other"}});
    let error = api.patch("cfg", &PatchParams::apply("rival"), &Patch::Apply(&rival)).await.unwrap_err();
    assert_eq!(error_code(error), 409);
    let forced = api.patch("cfg", &PatchParams::apply("rival").force(), &Patch::Apply(&rival)).await.unwrap();
    assert_eq!(forced.data.unwrap()["a"], "other");
    let managers: Vec<String> =
        forced.metadata.managed_fields.unwrap().iter().filter_map(|m| m.manager.clone()).collect();
    assert_eq!(managers, ["rival"], "ci lost its only field to the forced apply");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owner_references_are_collected() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut held = configmap("held", json!({}));
    held.metadata.finalizers = Some(vec!["mcprollout.dev/cleanup".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("held").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert_eq!(error_code(api.get("held").await.unwrap_err()), 404);

    for policy in ["background", "foreground"] {
        let owner = api
            .create(&PostParams::default(), &configmap(&format!("owner-{policy}"), json!({})))
            .await
            .unwrap();
        let mut dependent = configmap(&format!("dep-{policy}"), json!({}));
        dependent.metadata.owner_references =
            Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(), "uid": owner.uid().unwrap()
        }))
        .unwrap()]);
        api.create(&PostParams::default(), &dependent).await.unwrap();
        let params =
            if policy == "foreground" { DeleteParams::foreground() } else { DeleteParams::background() };
        api.delete(&owner.name_any(), &params).await.unwrap();
        assert_eq!(error_code(api.get(&format!("dep-{policy}")).await.unwrap_err()), 404, "{policy}");
        assert_eq!(error_code(api.get(&owner.name_any()).await.unwrap_err()), 404, "{policy}");
    }
}

#[tokio::test]
async fn a_watcher_sees_changes_and_resumes() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stream = watcher(api.clone(), watcher::Config::default().labels("app=watched")).applied_objects();
    let mut stream = Box::pin(stream);
    api.create(&PostParams::default(), &configmap("w1", json!({"app": "watched"}))).await.unwrap();
    api.create(&PostParams::default(), &configmap("ignored", json!({"app": "other"}))).await.unwrap();
    let first =
        tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.name_any(), "w1");
    api.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    let second =
        tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(second.data.unwrap()["k"], "2");

    // A raw watch from an old resourceVersion replays what happened since.
    let rv = first.resource_version().unwrap();
    let mut events = api
        .watch(&kube::api::WatchParams::default().labels("app=watched").timeout(3), &rv)
        .await
        .unwrap()
        .boxed();
    let replayed =
        tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap();
    match replayed {
        kube::core::WatchEvent::Modified(cm) => assert_eq!(cm.name_any(), "w1"),
        other => panic!("expected the modification, got {other:?}"),
    }
}

#[tokio::test]
async fn crds_become_servable_and_invalid_custom_resources_are_rejected() {
    let (_plane, client) = connect().await;
    let crd_yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/mcprollout.dev_mcprollouts.yaml"
    ))
    .unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml).unwrap();
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    let applied = crds
        .patch("mcprollouts.mcprollout.dev", &PatchParams::apply("test").force(), &Patch::Apply(&crd))
        .await
        .unwrap();
    // What `kubectl wait --for=condition=Established` waits for.
    let conditions = applied.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{conditions:?}");

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, _) =
        discovery.resolve_gvk(&GroupVersionKind::gvk("mcprollout.dev", "v1alpha1", "McpRollout")).unwrap();
    assert_eq!(resource.plural, "mcprollouts");

    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/canary.yaml")).unwrap();
    let example: serde_json::Value = serde_yaml::from_str(&example).unwrap();
    let namespace = example["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces.patch(&namespace, &PatchParams::apply("test"), &Patch::Apply(&ns)).await.unwrap();
    let rollouts: Api<mcp_rollout::api::McpRollout> = Api::namespaced(client.clone(), &namespace);
    let name = example["metadata"]["name"].as_str().unwrap().to_owned();
    let created = rollouts.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&example)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let mut bad = example.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["strategy"] = json!({"canary": {"steps": [{"setWeight": 50}, {"setWeight": 10}]}});
    let error = rollouts.patch("bad", &PatchParams::apply("test"), &Patch::Apply(&bad)).await.unwrap_err();
    assert_eq!(error_code(error), 422);
    let mut wrong_type = example.clone();
    wrong_type["metadata"]["name"] = json!("wrong-type");
    wrong_type["spec"]["replicas"] = json!("three");
    let error = rollouts
        .patch("wrong-type", &PatchParams::apply("test"), &Patch::Apply(&wrong_type))
        .await
        .unwrap_err();
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422);
            assert!(status.message.contains("spec.replicas"), "{}", status.message);
        }
        other => panic!("{other:?}"),
    }

    let dynamic = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mcprollout.dev", "v1alpha1", "McpRollout"),
        "mcprollouts",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &dynamic);
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);

    crds.delete("mcprollouts.mcprollout.dev", &DeleteParams::default()).await.unwrap();
    let error = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(error_code(error), 404);
}

#[tokio::test]
async fn requests_without_the_token_are_refused_and_tls_is_required() {
    let plane = ControlPlane::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ca = reqwest::Certificate::from_pem(plane.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let url = format!("{}/api/v1/namespaces", plane.url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let authorized = http.get(&url).bearer_auth(&plane.token).send().await.unwrap();
    assert_eq!(authorized.status(), 200);
    let plain = reqwest::Client::new().get(url.replace("https://", "http://")).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
}

#[tokio::test]
async fn a_selector_watch_sees_objects_leave_and_enter_its_selection() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created =
        api.create(&PostParams::default(), &configmap("mover", json!({"app": "watched"}))).await.unwrap();
    let rv = created.resource_version().unwrap();
    let params = kube::api::WatchParams::default().labels("app=watched").timeout(5);
    let mut events = api.watch(&params, &rv).await.unwrap().boxed();
    api.patch(
        "mover",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    api.patch("mover", &PatchParams::default(), &Patch::Merge(json!({"data": {"unseen": "1"}})))
        .await
        .unwrap();
    api.patch(
        "mover",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "watched"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            kube::core::WatchEvent::Deleted(_) => kinds.push("DELETED"),
            kube::core::WatchEvent::Added(_) => kinds.push("ADDED"),
            kube::core::WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            kube::core::WatchEvent::Bookmark(_) => {}
            kube::core::WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["DELETED", "ADDED"]);
}

#[tokio::test]
async fn a_reflector_stays_right_across_watch_restarts() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    // One-second watches: the watcher resumes from its last resourceVersion again and again.
    let config = watcher::Config::default().labels("app=reflected").timeout(1);
    let reflector = kube::runtime::reflector(writer, watcher(api.clone(), config)).applied_objects();
    let driver = tokio::spawn(async move {
        let mut stream = Box::pin(reflector);
        while stream.next().await.is_some() {}
    });
    for round in 0..4 {
        api.create(&PostParams::default(), &configmap(&format!("r{round}"), json!({"app": "reflected"})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    api.delete("r0", &DeleteParams::default()).await.unwrap();
    api.patch("r1", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "final"}}))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut names: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        names.sort();
        let r1_final = reader
            .state()
            .iter()
            .any(|c| c.name_any() == "r1" && c.data.as_ref().is_some_and(|d| d["k"] == "final"));
        if names == ["r1", "r2", "r3"] && r1_final {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "reflector state: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver.abort();
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410() {
    let (plane, client) = connect().await;
    let configmaps = plane.store.resolve("", "v1", "configmaps").unwrap();
    let created =
        plane.store.create(&configmaps, "default", json!({"metadata": {"name": "busy"}}), false).unwrap();
    let first_rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    for i in 0..10_050 {
        plane
            .store
            .modify(&configmaps, "default", "busy", None, false, |current| {
                let mut next = current.clone();
                next["data"] = json!({"i": i.to_string()});
                Ok(next)
            })
            .unwrap();
    }
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut events =
        api.watch(&kube::api::WatchParams::default().timeout(5), &first_rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap() {
        kube::core::WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn strategic_merge_pod_grace_deletecollection_and_malformed_input() {
    let (plane, client) = connect().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [{"name": "main", "image": "i:1"}, {"name": "sidecar", "image": "s:1"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "i:2"}]}}}});
    let patched = deployments.patch("app", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    let containers = patched.spec.template.spec.unwrap().containers;
    let images: Vec<(String, Option<String>)> = containers.into_iter().map(|c| (c.name, c.image)).collect();
    assert_eq!(images, [("main".into(), Some("i:2".into())), ("sidecar".into(), Some("s:1".into()))]);

    // A pod deleted with a grace period stays, terminating, until it ends.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.delete("p", &DeleteParams { grace_period_seconds: Some(1), ..DeleteParams::default() })
        .await
        .unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(error_code(pods.get("p").await.unwrap_err()), 404);

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["x1", "x2", "keep"] {
        let labels = if name == "keep" { json!({}) } else { json!({"batch": "x"}) };
        configmaps.create(&PostParams::default(), &configmap(name, labels)).await.unwrap();
    }
    configmaps
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("batch=x"))
        .await
        .unwrap();
    let left: Vec<String> = configmaps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, ["keep"]);

    let ca = reqwest::Certificate::from_pem(plane.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let post = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", plane.url()))
            .bearer_auth(&plane.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = post("/api/v1/namespaces/default/configmaps", "{not json").await.unwrap();
    assert_eq!(malformed.status(), 400);
    let status: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("BadRequest")));
    assert_eq!(post("/api/v1/namespaces/default/widgets", "{}").await.unwrap().status(), 404);
    assert_eq!(post("/apis/nope.example/v1/things", "{}").await.unwrap().status(), 404);
    let huge = http
        .post(format!("{}/api/v1/namespaces/default/configmaps", plane.url()))
        .bearer_auth(&plane.token)
        .header("content-type", "application/json")
        .body(vec![b' '; 4 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
}

#[tokio::test]
async fn an_idle_watch_gets_bookmarks_and_ends_at_its_timeout() {
    let (_plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let started = std::time::Instant::now();
    let params = kube::api::WatchParams::default().timeout(3);
    let events: Vec<_> = api.watch(&params, "0").await.unwrap().try_collect().await.unwrap();
    assert!(events.iter().any(|e| matches!(e, kube::core::WatchEvent::Bookmark(_))), "{events:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(6), "{elapsed:?}");
}

/// Every resource request is recorded as RBAC sees it; an apply that creates is authorized as
/// `create` too; a service-account token names its account.
#[tokio::test]
async fn requests_are_recorded_with_user_verb_and_resource() {
    let (plane, client) = connect().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = PatchParams::apply("test");
    api.patch("applied", &apply, &Patch::Apply(&configmap("applied", json!({})))).await.unwrap();
    api.patch("applied", &apply, &Patch::Apply(&configmap("applied", json!({})))).await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let token = plane.auth.issue_service_account_token("ops", "operator");
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).no_proxy().build().unwrap();
    let answer = http
        .get(format!("{}/api/v1/namespaces/ops/secrets/s", plane.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);

    let seen: Vec<(String, String, String)> = plane
        .auth
        .requests()
        .into_iter()
        .map(|r| (r.user, r.verb, format!("{}/{}", r.group, r.resource)))
        .collect();
    let admin =
        |verb: &str| (testbed::auth::ADMIN_USER.to_owned(), verb.to_owned(), "/configmaps".to_owned());
    assert_eq!(seen[..4], [admin("patch"), admin("create"), admin("patch"), admin("list")], "{seen:?}");
    assert_eq!(
        seen[4],
        ("system:serviceaccount:ops:operator".to_owned(), "get".to_owned(), "/secrets".to_owned())
    );
}
