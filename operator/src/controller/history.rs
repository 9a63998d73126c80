//! The template history: each template that became stable is kept as a ControllerRevision
//! (`<rollout>-<revision>`, labelled with the rollout and the revision, controlled by the
//! McpRollout), numbered in the order they became stable, as a StatefulSet keeps its own. It is
//! what `kubectl mcprollout history` lists and `undo` sets `spec.template` back to; Deployments
//! of old revisions are gone once they drained, so they cannot serve for it.
//!
//! A template stable again (after an undo) is recorded again under the next number: its old
//! entry is deleted and a new one created (no `patch` needed on ControllerRevisions).

use k8s_openapi::{
    api::{apps::v1::ControllerRevision, core::v1::PodTemplateSpec},
    apimachinery::pkg::runtime::RawExtension,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
};
use serde_json::json;

use super::{error::Error, names};
use crate::api::{McpRollout, labels};

/// One entry of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its ControllerRevision's name.
    pub name: String,
    /// Order in which the templates became stable (1 = the first).
    pub number: i64,
    pub revision: String,
    pub template: Option<PodTemplateSpec>,
    pub created: Option<jiff::Timestamp>,
}

impl Entry {
    fn of(object: &ControllerRevision) -> Option<Self> {
        Some(Self {
            name: object.name_any(),
            number: object.revision.unwrap_or(0),
            revision: object.labels().get(labels::REVISION)?.clone(),
            template: object.data.0.get("template").cloned().and_then(|t| serde_json::from_value(t).ok()),
            created: object.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
    }

    /// The images of the template's containers (for listings).
    pub fn images(&self) -> Vec<String> {
        let containers = self.template.as_ref().and_then(|t| t.spec.as_ref()).map(|s| s.containers.clone());
        containers.into_iter().flatten().filter_map(|c| c.image).collect()
    }
}

/// The rollout's history, oldest first: the ControllerRevisions it controls.
pub async fn list(api: &Api<ControllerRevision>, rollout: &McpRollout) -> Result<Vec<Entry>, Error> {
    let params = ListParams::default().labels(&format!("{}={}", labels::ROLLOUT, rollout.name_any()));
    let uid = rollout.metadata.uid.as_deref();
    let mut entries: Vec<Entry> = api
        .list(&params)
        .await?
        .items
        .iter()
        .filter(|c| {
            c.owner_references().iter().any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .filter_map(Entry::of)
        .collect();
    entries.sort_by_key(|e| e.number);
    Ok(entries)
}

/// Records the spec's template, whose revision `revision` is now stable, as the newest entry,
/// and removes the oldest beyond `spec.revisionHistoryLimit`.
pub async fn record(
    api: &Api<ControllerRevision>,
    rollout: &McpRollout,
    revision: &str,
) -> Result<(), Error> {
    let entries = list(api, rollout).await?;
    let newest = entries.last();
    if newest.is_none_or(|e| e.revision != revision) {
        let number = newest.map_or(1, |e| e.number + 1);
        if let Some(old) = entries.iter().find(|e| e.revision == revision) {
            delete(api, &old.name).await?;
        }
        let name = names::deployment(&rollout.name_any(), revision);
        let object = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: rollout.metadata.namespace.clone(),
                labels: Some(
                    [
                        (labels::ROLLOUT.to_owned(), rollout.name_any()),
                        (labels::REVISION.to_owned(), revision.to_owned()),
                        ("app.kubernetes.io/managed-by".to_owned(), names::MANAGED_BY.to_owned()),
                    ]
                    .into(),
                ),
                owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: RawExtension(json!({"template": rollout.spec.template})),
            revision: Some(number),
        };
        let params = PostParams { field_manager: Some(names::FIELD_MANAGER.into()), ..PostParams::default() };
        match api.create(&params, &object).await {
            Ok(_) => {}
            // Recorded meanwhile (a reconcile of another operator instance): nothing to add.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let entries = list(api, rollout).await?;
    let limit = usize::try_from(rollout.spec.revision_history_limit.max(1)).unwrap_or(1);
    let excess = entries.len().saturating_sub(limit);
    for old in entries.iter().take(excess).filter(|e| e.revision != revision) {
        delete(api, &old.name).await?;
    }
    Ok(())
}

async fn delete(api: &Api<ControllerRevision>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why `undo` cannot go where it was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UndoError {
    #[error("no history entry numbered {0} (see `kubectl mcprollout history`)")]
    NoSuchNumber(i64),
    #[error("nothing to go back to: the history holds no template other than the current one")]
    NothingBefore,
    #[error("history entry {0} holds no template")]
    NoTemplate(i64),
}

/// The entry `undo` sets the template back to: `to` by number, or else the newest whose
/// revision is neither the spec's (`current`) nor the stable one — the template that was
/// stable before.
pub fn undo_target<'e>(
    entries: &'e [Entry],
    current: &str,
    stable: Option<&str>,
    to: Option<i64>,
) -> Result<&'e Entry, UndoError> {
    let entry = match to {
        Some(number) => entries.iter().find(|e| e.number == number).ok_or(UndoError::NoSuchNumber(number))?,
        None => entries
            .iter()
            .rev()
            .find(|e| e.revision != current && Some(e.revision.as_str()) != stable)
            .ok_or(UndoError::NothingBefore)?,
    };
    if entry.template.is_none() {
        return Err(UndoError::NoTemplate(entry.number));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: i64, revision: &str) -> Entry {
        Entry {
            name: format!("docs-{revision}"),
            number,
            revision: revision.into(),
            template: Some(PodTemplateSpec::default()),
            created: None,
        }
    }

    #[test]
    fn undo_goes_to_the_template_stable_before_the_current_one() {
        let history = [entry(1, "aaa"), entry(2, "bbb"), entry(3, "ccc")];
        // Steady on ccc: back to bbb.
        assert_eq!(undo_target(&history, "ccc", Some("ccc"), None).unwrap().revision, "bbb");
        // ddd rolling out (not yet in the history) over stable ccc: back to bbb, not to ccc,
        // which `abort` already keeps.
        assert_eq!(undo_target(&history, "ddd", Some("ccc"), None).unwrap().revision, "bbb");
        // By number.
        assert_eq!(undo_target(&history, "ccc", Some("ccc"), Some(1)).unwrap().revision, "aaa");
        assert_eq!(undo_target(&history, "ccc", Some("ccc"), Some(7)), Err(UndoError::NoSuchNumber(7)));
        assert_eq!(undo_target(&history[2..], "ccc", Some("ccc"), None), Err(UndoError::NothingBefore));
        let mut broken = entry(4, "eee");
        broken.template = None;
        assert_eq!(undo_target(&[broken], "ccc", Some("ccc"), Some(4)), Err(UndoError::NoTemplate(4)));
    }
}
