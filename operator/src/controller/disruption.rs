//! Draining pods are marked and guarded. Marked: `controller.kubernetes.io/pod-deletion-cost`
//! puts them first in line when their Deployment shrinks after a drain of some of its pods, so
//! the ReplicaSet removes exactly the drained ones rather than picking by its own ranking (which
//! takes not-ready pods first: the out-of-rotation pods still holding sessions). Guarded: a
//! PodDisruptionBudget per draining revision, over the marked pods only, with `maxUnavailable:
//! 0`, so a node drain or any other eviction waits for the drain instead of cutting its
//! sessions. The budget does not hold back the operator's own scale-down or deletion (those
//! are not evictions), and it lives only while the drain runs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{
        core::v1::Pod,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

use super::{Error, names, observe, resources};
use crate::{
    api::{McpRollout, labels},
    engine::{RevisionPlan, Role},
};

/// Label on a pod that is draining: what the revision's PodDisruptionBudget selects.
pub const DRAINING_LABEL: &str = "mcprollout.dev/draining";
/// Kubernetes' ReplicaSet deletion ranking hint (beta since 1.22, on by default).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Below the default cost (0): removed before any serving pod of the revision.
const DRAINING_COST: &str = "-1000";

/// The pods whose draining mark must change, and to what: a pod is draining when its whole
/// revision drains, or when the plan lists it among the pods leaving a serving revision.
/// Terminating pods and revisions outside the plan are left as they are.
pub fn marking_changes(plan: &[RevisionPlan], pods: &[Pod]) -> Vec<(String, bool)> {
    let mut changes = Vec::new();
    for pod in pods.iter().filter(|p| !observe::terminating(p)) {
        let (Some(name), Some(revision)) = (pod.metadata.name.as_deref(), observe::revision_of(pod)) else {
            continue;
        };
        let Some(p) = plan.iter().find(|p| p.revision == revision) else { continue };
        let wanted = p.role == Role::Draining || p.leaving.iter().any(|l| l == name);
        if is_marked(pod) != wanted {
            changes.push((name.to_owned(), wanted));
        }
    }
    changes
}

fn is_marked(pod: &Pod) -> bool {
    pod.labels().get(DRAINING_LABEL).is_some_and(|v| v == "true")
}

/// Revisions with pods draining: each gets a budget.
pub fn draining_revisions(plan: &[RevisionPlan]) -> BTreeSet<String> {
    plan.iter()
        .filter(|p| p.role == Role::Draining || !p.leaving.is_empty())
        .map(|p| p.revision.clone())
        .collect()
}

/// The budget over one revision's draining pods.
pub fn budget(rollout: &McpRollout, revision: &str) -> PodDisruptionBudget {
    let name = rollout.name_any();
    let mut selector = resources::revision_labels(&name, revision);
    selector.insert(DRAINING_LABEL.into(), "true".into());
    let mut labels = resources::revision_labels(&name, revision);
    labels.insert("app.kubernetes.io/managed-by".into(), names::MANAGED_BY.into());
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(names::drain_budget(&name, revision)),
            namespace: rollout.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            selector: Some(LabelSelector { match_labels: Some(selector), match_expressions: None }),
            // The default policy (IfHealthyBudget) is what guards them: draining pods are not
            // Ready (out of rotation), and AlwaysAllow would let exactly them be evicted.
            unhealthy_pod_eviction_policy: None,
            min_available: None,
        }),
        status: None,
    }
}

/// Marks and unmarks pods as the plan says, together (`pod_patches`); returns the pods marked
/// draining. A pod deleted since it was listed is skipped.
pub async fn mark_pods(
    pods_api: &Api<Pod>,
    plan: &[RevisionPlan],
    pods: &[Pod],
    writes: &super::caches::Writes,
) -> Result<Vec<String>, Error> {
    let patches = marking_changes(plan, pods).into_iter().map(|(name, draining)| async move {
        let patch = if draining {
            json!({"metadata": {"labels": {DRAINING_LABEL: "true"}, "annotations": {DELETION_COST: DRAINING_COST}}})
        } else {
            json!({"metadata": {"labels": {DRAINING_LABEL: null}, "annotations": {DELETION_COST: null}}})
        };
        (pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await, (name, draining))
    });
    let patched = super::pod_patches::send(patches, writes).await?;
    Ok(patched.into_iter().filter_map(|(name, draining)| draining.then_some(name)).collect())
}

/// Applies a budget for each draining revision and deletes this rollout's budgets of revisions
/// that no longer drain (only those it controls).
pub async fn apply_budgets(
    api: &Api<PodDisruptionBudget>,
    rollout: &McpRollout,
    plan: &[RevisionPlan],
    current: &[PodDisruptionBudget],
    writes: &super::caches::Writes,
) -> Result<(), Error> {
    let wanted = draining_revisions(plan);
    let existing: BTreeMap<String, &PodDisruptionBudget> = current
        .iter()
        .filter(|b| {
            b.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == rollout.uid().as_ref())
        })
        .filter_map(|b| Some((b.labels().get(labels::REVISION)?.clone(), b)))
        .collect();
    let apply = PatchParams::apply(names::FIELD_MANAGER).force();
    for revision in &wanted {
        if existing.contains_key(revision) {
            continue; // its spec never changes
        }
        let budget = budget(rollout, revision);
        writes.record(
            &api.patch(&names::drain_budget(&rollout.name_any(), revision), &apply, &Patch::Apply(&budget))
                .await?,
        );
    }
    for (revision, budget) in existing {
        if wanted.contains(&revision) || budget.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&budget.name_any(), &DeleteParams::default()).await {
            Ok(answer) => writes.record_delete(&budget.name_any(), &answer),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RevisionPlan;

    fn pod(name: &str, revision: &str, marked: bool) -> Pod {
        let mut labels = resources::revision_labels("docs", revision);
        if marked {
            labels.insert(DRAINING_LABEL.into(), "true".into());
        }
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..ObjectMeta::default() },
            ..Pod::default()
        }
    }

    fn plan(revision: &str, role: Role, leaving: &[&str]) -> RevisionPlan {
        RevisionPlan {
            revision: revision.into(),
            role,
            replicas: 3,
            in_rotation: 0,
            weight: 0,
            leaving: leaving.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn leaving_pods_and_whole_draining_revisions_are_marked_and_the_rest_unmarked() {
        let pods = [
            pod("a-0", "a", false),
            pod("a-1", "a", true),
            pod("a-2", "a", false),
            pod("b-0", "b", false),
            pod("c-0", "c", true),
        ];
        let plan = [plan("a", Role::Stable, &["a-0", "a-1"]), plan("b", Role::Draining, &[])];
        // a-1 is marked already; c is outside the plan: left alone.
        assert_eq!(marking_changes(&plan, &pods), vec![("a-0".to_owned(), true), ("b-0".to_owned(), true)]);
        let served_on = [RevisionPlan { leaving: vec![], ..plan[0].clone() }];
        assert_eq!(marking_changes(&served_on, &pods), vec![("a-1".to_owned(), false)]);
        assert_eq!(draining_revisions(&plan).into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn the_budget_selects_only_the_draining_pods_and_allows_no_eviction() {
        let rollout: McpRollout = serde_json::from_value(json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "i"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}
        }))
        .unwrap();
        let b = budget(&rollout, "abc");
        let spec = b.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
        let selector = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(selector.get(DRAINING_LABEL).map(String::as_str), Some("true"));
        assert_eq!(selector.get(labels::REVISION).map(String::as_str), Some("abc"));
        assert_eq!(b.metadata.owner_references.unwrap()[0].uid, "u1");
    }
}
