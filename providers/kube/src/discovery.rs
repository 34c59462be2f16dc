//! The `mesh_endpoint_discovery` check: what istiod of one cluster discovers of a service across
//! the mesh, found the way istiod finds it. In its own cluster with meshform's connection; in
//! every remote cluster with the kubeconfig of that cluster's remote secret (its server, CA and
//! token, as istiod reads it), listing the service's EndpointSlices
//! (`kubernetes.io/service-name`); the `version` labels of the Pods they point at come from the
//! run's snapshot of each cluster (one Pod list per cluster, not one per pair: istiod's own Pod
//! reads are not what a remote secret could break once it lists endpoints). The check passes when the ready
//! endpoints together carry every expected `version` label (HelloWorld's v1 and v2): the
//! control-plane half of the guide's `curl helloworld.sample:5000/hello` from every cluster.
//!
//! Arguments: `cluster` (whose istiod), `remotes` (the other clusters), `service`,
//! `namespace` (`sample`), `versions` (`["v1", "v2"]`), `secret_namespace` (`istio-system`).

use std::collections::BTreeSet;

use meshform_engine::provider::{ErrorKind, ProviderError, ProviderResult};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use crate::conn::Kube;
use crate::objects::{self, ObjRef};
use crate::types::remote_secret::remote_client;

fn arg(args: &Map, k: &str) -> ProviderResult<String> {
    args.get(k)
        .and_then(Value::to_interpolated)
        .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("check needs `{k}`")))
}

fn list(args: &Map, k: &str) -> ProviderResult<Vec<String>> {
    match args.get(k) {
        Some(Value::List(items)) => Ok(items.iter().filter_map(Value::to_interpolated).collect()),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(other) => Err(ProviderError::new(ErrorKind::Invalid, format!("`{k}` must be a list, not {other}"))),
    }
}

/// The Pods of the ready endpoints in `slices` (EndpointSlice list JSON).
fn ready_pods(slices: &J) -> Vec<String> {
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .filter_map(|e| e["targetRef"]["name"].as_str().map(String::from))
        .collect()
}

/// The `version` labels of `pods` of `namespace` in `cluster`, from the run's snapshot (one
/// list of the namespace's Pods per cluster, however many istiods ask).
async fn versions_of(k: &Kube, cluster: &str, namespace: &str, pods: &[String]) -> ProviderResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for name in pods {
        let r = ObjRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(namespace.into()),
            name: name.clone(),
        };
        if let Some(v) = objects::read(k, cluster, &r)
            .await?
            .and_then(|p| p["metadata"]["labels"]["version"].as_str().map(String::from))
        {
            out.insert(v);
        }
    }
    Ok(out)
}

fn slices_path(namespace: &str, service: &str) -> String {
    format!(
        "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{service}"
    )
}

/// Runs the check; `(passed, what was found)`.
pub async fn check(k: &Kube, args: &Map) -> ProviderResult<(bool, String)> {
    let cluster = arg(args, "cluster")?;
    let service = arg(args, "service")?;
    let namespace = args.get("namespace").and_then(Value::to_interpolated).unwrap_or_else(|| "sample".into());
    let secrets =
        args.get("secret_namespace").and_then(Value::to_interpolated).unwrap_or_else(|| "istio-system".into());
    let want: BTreeSet<String> = list(args, "versions")?.into_iter().collect();
    let path = slices_path(&namespace, &service);
    let mut found: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut problems = Vec::new();
    // Its own cluster's endpoints, as istiod sees them in-cluster (meshform's connection).
    let client = k.client(&cluster).await?;
    let req = http::Request::get(path.as_str())
        .body(Vec::new())
        .map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
    match client.request::<J>(req).await {
        Ok(s) => found.push((cluster.clone(), versions_of(k, &cluster, &namespace, &ready_pods(&s)).await?)),
        Err(e) => problems.push(format!("`{cluster}` (its own): {e}")),
    }
    // Every remote cluster's, through the remote secret istiod reads; all at once, as istiod
    // watches them (each cluster's request budget still bounds what reaches it), reported in
    // the order given.
    let remotes = list(args, "remotes")?;
    let reads = remotes.iter().map(|remote| {
        let (cluster, secrets, path, namespace, service) = (&cluster, &secrets, &path, &namespace, &service);
        async move {
            let pair = format!("`{cluster}` → `{remote}`");
            Ok::<_, ProviderError>(match remote_client(k, remote, cluster, secrets).await? {
                Err(why) => Err(format!("{pair}: {why}")),
                Ok(c) => match c.get(path).await {
                    Ok(s) => Ok((remote.clone(), versions_of(k, remote, namespace, &ready_pods(&s)).await?)),
                    Err(e) => Err(format!(
                        "{pair}: the remote secret's kubeconfig cannot list {service}'s endpoints: {}",
                        crate::types::remote_secret::brief(&e)
                    )),
                },
            })
        }
    });
    for r in futures::future::join_all(reads).await {
        match r? {
            Ok(f) => found.push(f),
            Err(p) => problems.push(p),
        }
    }
    let seen: BTreeSet<String> = found.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
    let missing: Vec<&String> = want.difference(&seen).collect();
    let by_cluster: Vec<String> = found
        .iter()
        .map(|(c, v)| {
            format!(
                "{c}: {}",
                if v.is_empty() { "none".into() } else { v.iter().cloned().collect::<Vec<_>>().join(", ") }
            )
        })
        .collect();
    let mut detail =
        format!("istiod in `{cluster}` discovers {service}.{namespace} versions [{}]", by_cluster.join("; "));
    if !missing.is_empty() {
        let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        detail.push_str(&format!("; missing: {}", m.join(", ")));
    }
    if !problems.is_empty() {
        detail.push_str(&format!("; {}", problems.join("; ")));
    }
    Ok((missing.is_empty() && problems.is_empty(), detail))
}
