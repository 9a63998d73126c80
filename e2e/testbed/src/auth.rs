//! Who is calling, and what they asked for.
//!
//! Bearer tokens identify either the admin (the kubeconfig the test bed writes) or a
//! service account (the token the kubelet hands each pod). Every resource request is recorded
//! the way the real API server's request-info resolver sees it — user, verb, group, resource,
//! subresource, namespace, name — so a test can check an operator's requests against the RBAC
//! rules it ships. The test bed records but does not enforce RBAC (a listed deviation).

use std::{collections::HashMap, sync::Mutex};

use serde::Serialize;

/// The admin's user name (kubeadm's name for the cluster-admin kubeconfig user).
pub const ADMIN_USER: &str = "kubernetes-admin";

/// One resource request, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RequestRecord {
    pub user: String,
    pub verb: String,
    /// API group; "" is the core group.
    pub group: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Tokens and the request record.
pub struct Auth {
    admin_token: String,
    /// token → user name (`system:serviceaccount:<namespace>:<name>`).
    service_accounts: Mutex<HashMap<String, String>>,
    requests: Mutex<Vec<RequestRecord>>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            admin_token: uuid::Uuid::new_v4().simple().to_string(),
            service_accounts: Mutex::default(),
            requests: Mutex::default(),
        }
    }
}

impl Auth {
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A new token for a service account (one per pod, as bound tokens are).
    pub fn issue_service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.service_accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), service_account_user(namespace, name));
        token
    }

    /// The user a bearer token authenticates, if any.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        if token == self.admin_token {
            return Some(ADMIN_USER.to_owned());
        }
        self.service_accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned()
    }

    pub fn record(&self, request: RequestRecord) {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(request);
    }

    /// Every resource request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What a request asks for, resolved from its method, path and query as the API server's
/// request-info resolver does. `None` for non-resource paths (discovery, /version, /openapi).
pub fn request_info(
    user: &str,
    method: &str,
    path: &str,
    watch_param: Option<&str>,
) -> Option<RequestRecord> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let owned = |s: &str| Some(s.to_owned());
    let (resource, namespace, name, subresource) = match rest {
        [] => return None,
        // A namespace object itself: /api/v1/namespaces/<ns>[/status].
        ["namespaces", ns] => ("namespaces", None, owned(ns), None),
        ["namespaces", ns, sub] if matches!(*sub, "status" | "finalize") => {
            ("namespaces", None, owned(ns), owned(sub))
        }
        ["namespaces", ns, plural] => (*plural, owned(ns), None, None),
        ["namespaces", ns, plural, name] => (*plural, owned(ns), owned(name), None),
        ["namespaces", ns, plural, name, sub] => (*plural, owned(ns), owned(name), owned(sub)),
        [plural] => (*plural, None, None, None),
        [plural, name] => (*plural, None, owned(name), None),
        [plural, name, sub] => (*plural, None, owned(name), owned(sub)),
        _ => return None,
    };
    let watching = watch_param.is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, name.is_some()) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watching => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(RequestRecord {
        user: user.to_owned(),
        verb: verb.to_owned(),
        group: group.to_owned(),
        resource: resource.to_owned(),
        subresource,
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        method: &str,
        path: &str,
        watch: Option<&str>,
    ) -> (String, String, String, Option<String>, Option<String>) {
        let r = request_info("u", method, path, watch).unwrap();
        (r.verb, r.group, r.resource, r.subresource, r.namespace)
    }

    #[test]
    fn requests_resolve_like_the_api_server() {
        assert_eq!(
            info("GET", "/apis/apps/v1/namespaces/a/deployments", None),
            ("list".into(), "apps".into(), "deployments".into(), None, Some("a".into()))
        );
        assert_eq!(info("GET", "/apis/apps/v1/deployments", Some("true")).0, "watch");
        assert_eq!(
            info("PATCH", "/api/v1/namespaces/a/pods/p/status", None),
            ("patch".into(), "".into(), "pods".into(), Some("status".into()), Some("a".into()))
        );
        assert_eq!(info("DELETE", "/api/v1/namespaces/a/pods", None).0, "deletecollection");
        assert_eq!(
            info("GET", "/api/v1/namespaces/a", None),
            ("get".into(), "".into(), "namespaces".into(), None, None)
        );
        assert_eq!(info("POST", "/apis/events.k8s.io/v1/namespaces/a/events", None).0, "create");
        assert!(request_info("u", "GET", "/apis", None).is_none());
        assert!(request_info("u", "GET", "/apis/apps/v1", None).is_none());
        assert!(request_info("u", "GET", "/version", None).is_none());
    }

    #[test]
    fn tokens_name_their_user() {
        let auth = Auth::default();
        let token = auth.issue_service_account_token("ops", "mcp-rollout");
        assert_eq!(auth.authenticate(&token).as_deref(), Some("system:serviceaccount:ops:mcp-rollout"));
        assert_eq!(auth.authenticate(auth.admin_token()).as_deref(), Some(ADMIN_USER));
        assert_eq!(auth.authenticate("nope"), None);
    }
}
