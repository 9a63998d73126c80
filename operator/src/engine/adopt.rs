//! Status lost (restored from a backup, re-created after `--cascade=orphan`, edited by hand)
//! while the revisions this McpRollout controls still run: the one the Service routes most
//! pods to becomes stable again, in rotation as it is, and the others that serve drain. Nothing
//! serving is taken out of rotation or removed because the status forgot it.

use super::prelude::*;

impl Engine<'_> {
    pub(super) fn adopt_serving_revisions(&mut self) {
        if self.st.stable_revision.is_some() || self.st.canary_revision.is_some() {
            return;
        }
        let desired = self.desired.clone();
        let mut serving: Vec<&RevisionObserved> = self
            .observed
            .revisions
            .iter()
            .filter(|r| r.in_endpoints > 0 || r.ready_in_rotation > 0)
            .collect();
        if serving.is_empty() {
            return;
        }
        // Most routed pods first; on a tie the spec's revision, then by name (deterministic).
        serving.sort_by(|a, b| {
            (b.in_endpoints, b.ready_in_rotation, b.revision == desired)
                .cmp(&(a.in_endpoints, a.ready_in_rotation, a.revision == desired))
                .then_with(|| a.revision.cmp(&b.revision))
        });
        let stable = serving[0].revision.clone();
        let others: Vec<(String, i32)> = serving[1..].iter().map(|r| (r.revision.clone(), r.pods)).collect();
        self.st.stable_revision = Some(stable.clone());
        self.set_stage(Stage::Steady);
        self.events.push(Event::warning(
            "Adopted",
            format!(
                "the status held no revision, but revision {stable} serves {} pod(s): it is stable again{}",
                serving[0].in_endpoints.max(serving[0].ready_in_rotation),
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; {} other serving revision(s) drain", others.len())
                }
            ),
        ));
        for (revision, pods) in others {
            self.start_drain(&revision, pods, false);
        }
    }
}
