//! Manual requests: `<action>@<id>` in the `mcprollout.dev/request` annotation.

use std::str::FromStr;

/// What a person can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Finish the current pause (canary) or flip now (blue-green preview) or end the
    /// post-promotion window. Gates still apply.
    Promote,
    /// Skip every remaining step and window once the new revision passes its probe at full size.
    PromoteFull,
    Pause,
    Resume,
    /// Roll back now (reason `Aborted`).
    Abort,
    /// Start the rolled-back revision again from the first step.
    Retry,
    /// Open the approval gates waiting now (the one named in the request, or all).
    Approve,
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "promote" => Self::Promote,
            "promote-full" => Self::PromoteFull,
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "abort" => Self::Abort,
            "retry" => Self::Retry,
            "approve" => Self::Approve,
            other => return Err(format!("unknown action `{other}`")),
        })
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::PromoteFull => "promote-full",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::Approve => "approve",
        }
    }
}

/// A request read from the annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    /// The gate an `approve=<gate>` names.
    pub gate: Option<String>,
    /// The whole annotation value: what `status.lastHandledRequest` records.
    pub id: String,
}

/// Parses `<action>@<id>` (`approve=<gate>@<id>` for one gate). The id makes two identical
/// actions in a row distinct requests.
pub fn parse_request(value: &str) -> Result<Request, String> {
    let (action, id) = value.split_once('@').ok_or_else(|| format!("`{value}` is not <action>@<id>"))?;
    if id.is_empty() {
        return Err(format!("`{value}` has an empty id"));
    }
    let (action, gate) = match action.split_once('=') {
        Some((action, gate)) if !gate.is_empty() => (action, Some(gate.to_owned())),
        Some(_) => return Err(format!("`{value}` names an empty gate")),
        None => (action, None),
    };
    let action: Action = action.parse()?;
    if gate.is_some() && action != Action::Approve {
        return Err(format!("`{value}`: only approve names a gate"));
    }
    Ok(Request { action, gate, id: value.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_and_rejects_malformed_values() {
        for action in ["promote", "promote-full", "pause", "resume", "abort", "retry", "approve"] {
            let r = parse_request(&format!("{action}@1")).unwrap();
            assert_eq!(r.action.as_str(), action);
            assert_eq!(r.id, format!("{action}@1"));
        }
        assert!(parse_request("promote").is_err());
        assert!(parse_request("promote@").is_err());
        assert!(parse_request("deploy@1").is_err());
        let one = parse_request("approve=change-ticket@7").unwrap();
        assert_eq!((one.action, one.gate.as_deref()), (Action::Approve, Some("change-ticket")));
        assert!(parse_request("approve=@7").is_err());
        assert!(parse_request("promote=x@7").is_err());
    }
}
