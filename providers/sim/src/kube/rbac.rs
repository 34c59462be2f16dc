//! Authorization as the RBAC authorizer does it, for service accounts: a request of a service
//! account is allowed when a ClusterRoleBinding, or a RoleBinding of the request's namespace,
//! binds it (by name, or one of its groups) to a role with a rule that covers the verb, API group
//! and resource. The admin token (`system:masters`) and Google identities (the simulator's token
//! is a project owner's) are allowed everything, as GKE allows them; discovery, OpenAPI and
//! `/version` are open to every authenticated user (`system:discovery`).

use serde_json::Value;

use super::state::Inner;

/// What a request asks to do: verb, API group, resource (with `/subresource`), namespace (empty
/// at the cluster scope).
#[derive(Debug, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource, `plural` or `plural/subresource`.
    pub resource: String,
    /// Namespace, or empty.
    pub namespace: String,
}

/// The attributes of a request to a resource path (`segs`: the path's segments); None for
/// discovery, OpenAPI and other non-resource paths.
pub fn attributes(method: &str, segs: &[&str], watch: bool) -> Option<Attributes> {
    let (group, rest) = match segs {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (*ns, r),
        r => ("", r),
    };
    let (plural, name, sub) = match rest {
        [] => return None,
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s, ..] => (*p, Some(*n), Some(*s)),
    };
    let verb = match (method, name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => "get",
    };
    let resource = sub.map_or_else(|| plural.to_string(), |s| format!("{plural}/{s}"));
    Some(Attributes { verb: verb.into(), group: group.into(), resource, namespace: namespace.into() })
}

/// Whether `user` (with `groups`) may do `a`, and why not.
pub fn decide(inner: &Inner, user: &str, groups: &[String], a: &Attributes) -> Result<(), String> {
    if groups.iter().any(|g| g == "system:masters") || !user.starts_with("system:serviceaccount:") {
        return Ok(());
    }
    let rbac = "rbac.authorization.k8s.io";
    // The keys sort by group, resource, namespace: each kind of binding is one range.
    let of = |plural: &str, ns: &str| {
        let start = (rbac.to_string(), plural.to_string(), ns.to_string(), String::new());
        let (plural, ns) = (plural.to_string(), ns.to_string());
        inner.objects.range(start..).take_while(move |((g, p, n, _), _)| g == rbac && *p == plural && *n == ns)
    };
    let bindings =
        of("clusterrolebindings", "").chain(of("rolebindings", &a.namespace).filter(|_| !a.namespace.is_empty()));
    for ((_, plural, ns, _), binding) in bindings {
        if !binding["subjects"].as_array().is_some_and(|s| s.iter().any(|s| names(s, user, groups))) {
            continue;
        }
        let role_ref = &binding["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap_or_default().to_string();
        let role = match role_ref["kind"].as_str() {
            Some("ClusterRole") => inner.objects.get(&(rbac.into(), "clusterroles".into(), String::new(), role_name)),
            Some("Role") if plural == "rolebindings" => {
                inner.objects.get(&(rbac.into(), "roles".into(), ns.clone(), role_name))
            }
            _ => None,
        };
        if role.and_then(|r| r["rules"].as_array()).is_some_and(|rules| rules.iter().any(|r| covers(r, a))) {
            return Ok(());
        }
    }
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let plural = a.resource.split('/').next().unwrap_or_default();
    Err(format!(
        "{plural} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        a.verb, a.resource, a.group
    ))
}

/// Whether a binding's subject is the user or one of its groups.
fn names(subject: &Value, user: &str, groups: &[String]) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user,
        Some("Group") => groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or_default();
            user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Whether a role's rule covers the request (rules naming `resourceNames` cover only requests
/// for those names, which lists and creates are not: left out here).
fn covers(rule: &Value, a: &Attributes) -> bool {
    let has = |field: &str, want: &str| {
        rule[field].as_array().is_some_and(|v| v.iter().any(|x| x == "*" || x.as_str() == Some(want)))
    };
    let named = rule["resourceNames"].as_array().is_some_and(|n| !n.is_empty());
    !named && has("verbs", &a.verb) && has("apiGroups", &a.group) && has("resources", &a.resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_become_attributes() {
        let a = |m: &str, p: &str, w: bool| {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            attributes(m, &segs, w).map(|a| format!("{} {}/{} {}", a.verb, a.group, a.resource, a.namespace))
        };
        assert_eq!(a("GET", "/api/v1/services", false).as_deref(), Some("list /services "));
        assert_eq!(a("GET", "/api/v1/namespaces/foo", false).as_deref(), Some("get /namespaces "));
        assert_eq!(a("GET", "/api/v1/namespaces", true).as_deref(), Some("watch /namespaces "));
        assert_eq!(
            a("GET", "/apis/discovery.k8s.io/v1/namespaces/sample/endpointslices", false).as_deref(),
            Some("list discovery.k8s.io/endpointslices sample")
        );
        assert_eq!(
            a("PUT", "/apis/apps/v1/namespaces/x/deployments/d/status", false).as_deref(),
            Some("update apps/deployments/status x")
        );
        assert_eq!(a("DELETE", "/api/v1/namespaces/x/pods", false).as_deref(), Some("deletecollection /pods x"));
        assert_eq!(a("GET", "/apis", false), None);
        assert_eq!(a("GET", "/apis/apps/v1", false), None);
    }
}
