//! The `McpRollout` API, group `mcprollout.dev`, version `v1alpha1`.

mod duration;
mod gates;
pub mod protocol;
mod revision;
mod spec;
mod status;

pub use duration::{DURATION_PATTERN, DurationError, HumanDuration};
pub use gates::*;
pub use revision::revision_of;
pub use spec::*;
pub use status::*;

/// API group of every resource this project defines.
pub const GROUP: &str = "mcprollout.dev";

/// Labels the operator puts on everything it creates.
pub mod labels {
    /// Name of the owning McpRollout.
    pub const ROLLOUT: &str = "mcprollout.dev/rollout";
    /// Revision (template hash) a pod or Deployment belongs to.
    pub const REVISION: &str = "mcprollout.dev/revision";
    /// Name of the McpRollout whose MCP session router a pod or Deployment is.
    pub const ROUTER: &str = "mcprollout.dev/router";
}

/// Pod readiness gate the operator sets to take a pod in or out of rotation without stopping
/// it, so its open sessions and streams keep being served while it drains.
pub const IN_ROTATION_GATE: &str = "mcprollout.dev/in-rotation";

/// Annotation through which people (and `kubectl mcprollout`, Argo CD resource actions) ask for
/// `promote`, `promote-full`, `pause`, `resume`, `abort`, `retry` or `approve[=<gate>]`, as `<action>@<unique id>`.
/// The operator acts on each id once and records it in `status.lastHandledRequest`. An
/// annotation rather than a spec field: Git owns the spec, and Argo CD self-heal or Flux would
/// undo a CLI's edit there, while neither touches an annotation it does not manage.
pub const REQUEST_ANNOTATION: &str = "mcprollout.dev/request";
