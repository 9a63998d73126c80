//! The McpRollout API (`mcprollout.dev/v1alpha1`): [`api`] (the custom resource's types),
//! [`crd`] (the CustomResourceDefinition generated from them, with its CEL rules) and
//! [`validate`] (the admission checks a manifest meets before it reaches a cluster). The
//! operator re-exports all three.

pub mod api;
pub mod crd;
pub mod validate;
