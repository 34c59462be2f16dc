//! The kinds a simulated API server serves: the built-in ones, the setup guides' custom kinds
//! (pre-registered as CRDs), and whatever CRDs are created at run time.

use serde_json::{Value, json};

/// A printer column: name, type, JSON path (dot form, no braces).
pub type Column = (String, String, String);

/// One served resource.
#[derive(Clone, Debug)]
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// A built-in type (strategic merge patch allowed; list items without apiVersion/kind).
    pub builtin: bool,
    /// Tracks `metadata.generation`.
    pub generation: bool,
    /// Has a status subresource.
    pub status: bool,
    /// Extra columns of `kubectl get`.
    pub columns: Vec<Column>,
    /// Fields usable in field selectors besides metadata.name/namespace.
    pub field_selectors: Vec<&'static str>,
}

impl ResourceDef {
    /// `group/version`, or `v1` for core.
    pub fn api_version(&self, v: &str) -> String {
        if self.group.is_empty() { v.to_string() } else { format!("{}/{v}", self.group) }
    }

    /// The list kind.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

fn core(
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    columns: &[(&str, &str, &str)],
    fs: &[&'static str],
) -> ResourceDef {
    ResourceDef {
        group: String::new(),
        versions: vec!["v1".into()],
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        builtin: true,
        generation: false,
        status: matches!(kind, "Namespace" | "Pod" | "Service"),
        columns: columns.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect(),
        field_selectors: fs.to_vec(),
    }
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceDef> {
    let mut deployments = core(
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        &[
            ("Ready", "string", ".status.readyReplicas"),
            ("Up-to-date", "integer", ".status.updatedReplicas"),
            ("Available", "integer", ".status.availableReplicas"),
        ],
        &[],
    );
    deployments.group = "apps".into();
    deployments.generation = true;
    deployments.status = true;
    let mut crds = core(
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &[("Created At", "date", ".metadata.creationTimestamp")],
        &[],
    );
    crds.group = "apiextensions.k8s.io".into();
    crds.generation = true;
    crds.status = true;
    // What leader election and meshform's Kubernetes state lock use.
    let mut leases = core("leases", "Lease", true, &[], &[("Holder", "string", ".spec.holderIdentity")], &[]);
    leases.group = "coordination.k8s.io".into();
    let mut slices =
        core("endpointslices", "EndpointSlice", true, &[], &[("AddressType", "string", ".addressType")], &[]);
    slices.group = "discovery.k8s.io".into();
    // RBAC, which operators' and controllers' installs carry.
    let rbac = |plural: &str, kind: &str, namespaced: bool| {
        let mut d = core(plural, kind, namespaced, &[], &[("Created At", "date", ".metadata.creationTimestamp")], &[]);
        d.group = "rbac.authorization.k8s.io".into();
        d
    };
    vec![
        core("namespaces", "Namespace", false, &["ns"], &[("Status", "string", ".status.phase")], &["status.phase"]),
        core("secrets", "Secret", true, &[], &[("Type", "string", ".type"), ("Data", "integer", "#data")], &["type"]),
        core("serviceaccounts", "ServiceAccount", true, &["sa"], &[("Secrets", "integer", "#secrets")], &[]),
        core(
            "services",
            "Service",
            true,
            &["svc"],
            &[
                ("Type", "string", ".spec.type"),
                ("Cluster-IP", "string", ".spec.clusterIP"),
                ("External-IP", "string", "external-ip"),
                ("Port(s)", "string", "ports"),
            ],
            &[],
        ),
        core(
            "pods",
            "Pod",
            true,
            &["po"],
            &[("Ready", "string", "ready"), ("Status", "string", ".status.phase"), ("Restarts", "integer", "restarts")],
            &["spec.nodeName", "status.phase"],
        ),
        core("configmaps", "ConfigMap", true, &["cm"], &[("Data", "integer", "#data")], &[]),
        core("endpoints", "Endpoints", true, &["ep"], &[], &[]),
        deployments,
        crds,
        leases,
        slices,
        rbac("clusterroles", "ClusterRole", false),
        rbac("clusterrolebindings", "ClusterRoleBinding", false),
        rbac("roles", "Role", true),
        rbac("rolebindings", "RoleBinding", true),
    ]
}

/// A CRD object of a namespaced (or cluster-scoped) kind with every version served, the first
/// stored, a status subresource and no schema.
fn crd(group: &str, plural: &str, kind: &str, short: &[&str], versions: &[&str], scope: &str) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": v, "served": true, "storage": i == 0,
                              "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                              "subresources": {"status": {}}}))
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": format!("{plural}.{group}")},
           "spec": {"group": group, "scope": scope, "versions": vs,
                    "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}}})
}

/// The kinds GKE serves in every cluster beyond the built-in ones: BackendConfig,
/// FrontendConfig, and Multi Cluster Ingress's MultiClusterIngress and MultiClusterService.
pub fn guide_crds() -> Vec<Value> {
    vec![
        crd(
            "networking.gke.io",
            "multiclusteringresses",
            "MultiClusterIngress",
            &["mci"],
            &["v1", "v1beta1"],
            "Namespaced",
        ),
        crd(
            "networking.gke.io",
            "multiclusterservices",
            "MultiClusterService",
            &["mcs"],
            &["v1", "v1beta1"],
            "Namespaced",
        ),
        crd("networking.gke.io", "frontendconfigs", "FrontendConfig", &[], &["v1beta1"], "Namespaced"),
        crd("cloud.google.com", "backendconfigs", "BackendConfig", &["bc"], &["v1", "v1beta1"], "Namespaced"),
    ]
}

/// Istio's own kinds (the Base component: a control plane, pre-installed or installed by the
/// operator or the fleet, brings them).
pub fn istio_crds() -> Vec<Value> {
    let versions = &["v1beta1", "v1alpha3", "v1"][..];
    vec![
        crd("networking.istio.io", "gateways", "Gateway", &["gw"], versions, "Namespaced"),
        crd("networking.istio.io", "destinationrules", "DestinationRule", &["dr"], versions, "Namespaced"),
        crd("networking.istio.io", "virtualservices", "VirtualService", &["vs"], versions, "Namespaced"),
        crd("networking.istio.io", "serviceentries", "ServiceEntry", &["se"], versions, "Namespaced"),
        crd(
            "security.istio.io",
            "peerauthentications",
            "PeerAuthentication",
            &["pa"],
            &["v1beta1", "v1"],
            "Namespaced",
        ),
        crd("telemetry.istio.io", "telemetries", "Telemetry", &["telemetry"], &["v1alpha1", "v1"], "Namespaced"),
    ]
}

/// The resource a CRD object defines, after checking it; an error message when it is invalid.
pub fn from_crd(crd: &Value) -> Result<ResourceDef, String> {
    let spec = &crd["spec"];
    let group = spec["group"]
        .as_str()
        .filter(|g| g.contains('.'))
        .ok_or("spec.group: Required value: must be a DNS subdomain with a dot")?;
    let names = &spec["names"];
    let plural = names["plural"].as_str().ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"].as_str().ok_or("spec.names.kind: Required value")?;
    if crd["metadata"]["name"].as_str() != Some(&format!("{plural}.{group}")) {
        return Err(format!(
            "metadata.name: Invalid value: must be spec.names.plural+\".\"+spec.group ({plural}.{group})"
        ));
    }
    let versions: Vec<&Value> =
        spec["versions"].as_array().map(|v| v.iter().filter(|x| x["served"] != false).collect()).unwrap_or_default();
    if versions.is_empty() {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    if spec["versions"].as_array().map_or(0, |v| v.iter().filter(|x| x["storage"] == true).count()) != 1 {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    let columns = versions[0]["additionalPrinterColumns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    Some((
                        c["name"].as_str()?.to_string(),
                        c["type"].as_str().unwrap_or("string").to_string(),
                        c["jsonPath"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceDef {
        group: group.into(),
        versions: versions.iter().filter_map(|v| v["name"].as_str().map(String::from)).collect(),
        plural: plural.into(),
        singular: names["singular"].as_str().map_or_else(|| kind.to_lowercase(), String::from),
        kind: kind.into(),
        namespaced: spec["scope"].as_str() != Some("Cluster"),
        short_names: names["shortNames"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        categories: names["categories"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        builtin: false,
        generation: true,
        status: versions[0]["subresources"]["status"].is_object(),
        columns,
        field_selectors: vec![],
    })
}
