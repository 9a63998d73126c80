//! What every part of the engine uses: its imports in one place.

pub(super) use std::time::Duration;

pub(super) use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(super) use super::{
    Stage, conditions,
    control::{Action, parse_request},
    core::{AnalysisSince, Engine, Hold, replicas_for, revision_plan, secs, step_skips_analysis, time},
    input::*,
    plan::*,
    stage_of,
};
pub(super) use crate::api::{
    BlueGreenStrategy, CanaryStep, CheckStatus, DrainStatus, McpRolloutSpec, McpRolloutStatus, OnRollback,
    Phase, ProbeStatus, RollbackReason, RollbackStatus, StrategyRef, Verdict,
};
