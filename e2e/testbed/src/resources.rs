//! The kinds the test bed serves: the built-in ones an operator and kubectl use, and every
//! kind a CustomResourceDefinition registers.

use serde_json::{Value, json};

/// One servable resource (a plural under a group/version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// `status` and/or `scale`.
    pub subresources: Vec<String>,
    /// The CRD's `openAPIV3Schema`, for custom resources.
    pub schema: Option<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The registry key: `group/version/plural`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    /// Discovery entries: the resource and its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let verbs =
            json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
        })];
        for sub in &self.subresources {
            let kind = if sub == "scale" { "Scale" } else { self.kind.as_str() };
            entries.push(json!({
                "name": format!("{}/{sub}", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    sub: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        subresources: sub.iter().map(|s| (*s).to_owned()).collect(),
        schema: None,
    }
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], &["status"]),
        builtin("", "v1", "Pod", "pods", true, &["po"], &["status"]),
        builtin("", "v1", "Service", "services", true, &["svc"], &["status"]),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], &[]),
        builtin("", "v1", "Secret", "secrets", true, &[], &[]),
        builtin("", "v1", "Event", "events", true, &["ev"], &[]),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], &[]),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"], &[]),
        builtin("apps", "v1", "Deployment", "deployments", true, &["deploy"], &["status", "scale"]),
        builtin("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], &["status", "scale"]),
        builtin("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &[], &[]),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[], &[]),
        // Stored so charts install; the test bed records requests but does not enforce RBAC.
        builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], &[]),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            &[],
        ),
        builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], &[]),
        builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], &[]),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["status"],
        ),
    ]
}

/// The resource types a CRD object declares (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let Some(group) = spec["group"].as_str() else { return Vec::new() };
    let (Some(kind), Some(plural)) = (names["kind"].as_str(), names["plural"].as_str()) else {
        return Vec::new();
    };
    let singular = names["singular"].as_str().map_or_else(|| kind.to_ascii_lowercase(), str::to_owned);
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|s| s.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let mut subresources = Vec::new();
            if v["subresources"].get("status").is_some() {
                subresources.push("status".to_owned());
            }
            if v["subresources"].get("scale").is_some() {
                subresources.push("scale".to_owned());
            }
            Some(ResourceType {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: singular.clone(),
                namespaced,
                short_names: short_names.clone(),
                subresources,
                schema: v["schema"].get("openAPIV3Schema").cloned(),
            })
        })
        .collect()
}
