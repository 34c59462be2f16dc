//! What `meshform sim` writes for the tools pointed at it: `public-ca.pem` (the root that signs
//! the Connect Gateway's and DNS-based endpoints' certificates), `env.sh` (gcloud endpoint overrides —
//! Cloud Storage's included, `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE` ending in `/` as gcloud
//! requires, with the JSON API chosen; Secret Manager's `…/secretmanager/`, to which gcloud
//! appends `v1/` —, token, project, KUBECONFIG, meshform's own variables:
//! `MESHFORM_GCP_*`, `MESHFORM_CONNECT_GATEWAY_ENDPOINT`, `SSL_CERT_FILE` (the public root), and
//! `MESHFORM_STORAGE_ENDPOINT`, the base URL meshform's GCS state backend
//! sends its Cloud Storage calls to), `kubeconfig` (one context per cluster,
//! named as `gcloud container clusters get-credentials` names them) and `world.json`.

use std::path::Path;

use base64::Engine as _;
use serde_json::json;

use crate::server::Sim;
use crate::world::region_of;

/// The context name gcloud gives a cluster.
pub fn context_name(project: &str, location: &str, cluster: &str) -> String {
    format!("gke_{project}_{location}_{cluster}")
}

/// The environment a shell (or a test) needs to point gcloud, kubectl and meshform at `sim`.
pub fn env_vars(sim: &Sim, dir: &Path) -> Vec<(String, String)> {
    let base = sim.base_url();
    vec![
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE".into(), format!("{base}/compute/v1/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER".into(), format!("{base}/container/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_GKEHUB".into(), format!("{base}/gkehub/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SERVICEUSAGE".into(), format!("{base}/serviceusage/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER".into(), format!("{base}/secretmanager/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER".into(), format!("{base}/cloudresourcemanager/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONNECTGATEWAY".into(), format!("{base}/connectgateway/")),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE".into(), format!("{base}/")),
        ("CLOUDSDK_STORAGE_PREFERRED_API".into(), "json".into()),
        ("CLOUDSDK_AUTH_ACCESS_TOKEN".into(), sim.token.clone()),
        ("CLOUDSDK_CORE_PROJECT".into(), sim.world.project.clone()),
        ("CLOUDSDK_CORE_DISABLE_PROMPTS".into(), "1".into()),
        ("KUBECONFIG".into(), dir.join("kubeconfig").display().to_string()),
        ("MESHFORM_GCP_ENDPOINT".into(), base.clone()),
        ("MESHFORM_GCP_ACCESS_TOKEN".into(), sim.token.clone()),
        ("MESHFORM_GCP_PROJECT".into(), sim.world.project.clone()),
        ("MESHFORM_STORAGE_ENDPOINT".into(), base),
        ("MESHFORM_CONNECT_GATEWAY_ENDPOINT".into(), sim.gateway_url.clone()),
        ("SSL_CERT_FILE".into(), dir.join(PUBLIC_CA).display().to_string()),
    ]
}

/// The simulator's public root CA, PEM: what the Connect Gateway and the DNS-based endpoints are
/// served under.
pub const PUBLIC_CA: &str = "public-ca.pem";

/// The comment at the top of `env.sh`.
const ENV_HEADER: &str = "\
# Points gcloud, kubectl and meshform at a running `meshform sim`: source this file.
# CLOUDSDK_API_ENDPOINT_OVERRIDES_*: gcloud's API endpoints (storage's must end with `/`).
# MESHFORM_GCP_*: the Google Cloud endpoint, token and project meshform's provider uses.
# MESHFORM_STORAGE_ENDPOINT: the Cloud Storage base URL meshform's GCS state backend uses
#   (buckets: meshform-demo-state, versioned, unless the world names its own).
# Secret Manager: gcloud secrets ... and meshform's gcp_secret_version data source (secrets come
#   from the world's [[secrets]]; none by default).
# MESHFORM_CONNECT_GATEWAY_ENDPOINT: the Connect Gateway that meshform reaches clusters through (connect-gateway).
# SSL_CERT_FILE: the simulator's public root (public-ca.pem), which signs what stands for Google's
#   publicly trusted names (the Connect Gateway, DNS-based endpoints): kubectl and meshform trust
#   it in place of the system roots. Unset it in a shell that also reaches the internet.
";

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The kubeconfig: one cluster, user and context per cluster of the world.
pub fn kubeconfig(sim: &Sim) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    let project = |c: &crate::store::ClusterAccess| {
        let spec = sim.world.clusters.iter().find(|w| w.name == c.name && w.location == c.location);
        spec.map_or(sim.world.project.as_str(), |w| sim.world.project_of(w))
    };
    for c in &sim.clusters {
        let ctx = context_name(project(c), &c.location, &c.name);
        clusters.push(format!(
            "- cluster:\n    certificate-authority-data: {}\n    server: https://{}\n  name: {ctx}\n",
            b64.encode(c.ca.cert_pem.as_bytes()),
            c.endpoint
        ));
        users.push(format!("- name: {ctx}\n  user:\n    token: {}\n", c.admin_token));
        contexts.push(format!("- context:\n    cluster: {ctx}\n    user: {ctx}\n  name: {ctx}\n"));
    }
    let current = sim.clusters.first().map(|c| context_name(project(c), &c.location, &c.name)).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\ncurrent-context: {current}\nclusters:\n{}contexts:\n{}users:\n{}",
        clusters.concat(),
        contexts.concat(),
        users.concat()
    )
}

/// The world in machine-readable form.
pub fn world_json(sim: &Sim) -> serde_json::Value {
    let clusters: Vec<serde_json::Value> = sim
        .world
        .clusters
        .iter()
        .map(|c| {
            let access = sim.clusters.iter().find(|a| a.name == c.name && a.location == c.location);
            let Some(store) = sim.shared.store_of(sim.world.project_of(c)) else { return serde_json::Value::Null };
            let st = store.lock().unwrap_or_else(|e| e.into_inner());
            let tags: Vec<String> = st
                .instances
                .values()
                .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with(&format!("gke-{}-", c.name))))
                .filter_map(|i| i["tags"]["items"][0].as_str().map(String::from))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            json!({
                "name": c.name, "location": c.location, "region": region_of(&c.location), "private": c.private,
                "autopilot": c.autopilot, "endpoint": access.map(|a| a.endpoint.clone()),
                "private_endpoint": access.and_then(|a| a.private_endpoint.clone()), "pod_cidr": c.pod_cidr,
                "node_tags": tags, "context": context_name(sim.world.project_of(c), &c.location, &c.name),
                "dns_endpoint": access.map(|a| a.dns_endpoint.clone()), "dns_access": c.dns_access,
                "public_endpoint": c.public_endpoint, "fleet": c.fleet,
                "istio_revision": c.istio_revision, "project": sim.world.project_of(c), "labels": c.labels,
            })
        })
        .collect();
    json!({
        "project": sim.world.project, "project_number": sim.world.project_number,
        "gcp_endpoint": sim.base_url(), "token_uri": sim.token_uri(), "connect_gateway": sim.gateway_url,
        "networks": [{"name": sim.world.network, "subnets": sim.world.subnets}],
        "service_projects": sim.world.service_projects,
        "clusters": clusters,
        "secrets": sim.shared.store.lock().unwrap_or_else(|e| e.into_inner()).secrets.keys().cloned().collect::<Vec<_>>(),
    })
}

/// Writes `env.sh`, `kubeconfig` and `world.json` into `dir`, each atomically.
pub fn write_all(sim: &Sim, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut env = String::from(ENV_HEADER);
    env.extend(env_vars(sim, dir).iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))));
    let write = crate::support::atomic_write;
    write(&dir.join("kubeconfig"), kubeconfig(sim).as_bytes())?;
    write(&dir.join(PUBLIC_CA), sim.public_root.cert_pem.as_bytes())?;
    write(&dir.join("world.json"), serde_json::to_string_pretty(&world_json(sim)).unwrap_or_default().as_bytes())?;
    write(&dir.join("env.sh"), env.as_bytes())
}
