//! The reconciler's errors. Problems with the McpRollout itself are not errors here: they
//! become a `Stalled` condition and an event. What is left is the API server failing us.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("the McpRollout has no {0}")]
    MissingField(&'static str),
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}
