//! Names of everything the operator creates, derived from the McpRollout's name alone so an
//! operator restart (or a second replica) finds the same objects.

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mcp-rollout";

/// `app.kubernetes.io/managed-by` value on created objects.
pub const MANAGED_BY: &str = "mcp-rollout";

/// Deployment of one revision.
pub fn deployment(rollout: &str, revision: &str) -> String {
    format!("{rollout}-{revision}")
}

/// PodDisruptionBudget over one revision's draining pods.
pub fn drain_budget(rollout: &str, revision: &str) -> String {
    format!("{rollout}-{revision}-drain")
}

/// The MCP session router's Deployment, ServiceAccount, Role, RoleBinding, budget and
/// ConfigMap.
pub fn router(rollout: &str) -> String {
    format!("{rollout}-router")
}

/// The Secret with the router's session key, when the operator makes it.
pub fn router_key(rollout: &str) -> String {
    format!("{rollout}-router-key")
}

/// Service over every in-rotation pod: the replica-ratio router.
pub fn service(rollout: &str) -> String {
    rollout.to_owned()
}

/// Service over the stable revision's pods.
pub fn stable_service(rollout: &str) -> String {
    format!("{rollout}-stable")
}

/// Service over the canary (or preview) revision's pods; the stable's when there is none.
pub fn canary_service(rollout: &str) -> String {
    format!("{rollout}-canary")
}
