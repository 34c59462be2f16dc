//! Server-side defaults and normalisation, per kind (what the real API server fills in on every
//! write): Secrets, Namespaces, Services and Deployments; other kinds are stored as sent.

use base64::Engine as _;
use serde_json::{Value, json};

use super::resources::ResourceDef;
use super::state::Inner;
use super::status::{KResult, KubeError};

/// Fills in the defaults of `def`'s kind in `obj` (or refuses it, as a Secret with bad data).
pub fn default_object(inner: &Inner, def: &ResourceDef, obj: &mut Value) -> KResult<()> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => secret(obj),
        ("", "namespaces") => {
            namespace(obj);
            Ok(())
        }
        ("", "services") => {
            service(inner, obj);
            Ok(())
        }
        ("apps", "deployments") => {
            deployment(obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Sets each `(field, value)` of `defaults` that `obj` lacks (or has as null).
fn fill(obj: &mut Value, defaults: impl IntoIterator<Item = (&'static str, Value)>) {
    for (k, v) in defaults {
        if obj[k].is_null() {
            obj[k] = v;
        }
    }
}

/// `stringData` folded into `data`; `data` must be base64; `type` defaults to Opaque; a
/// service-account token Secret must name its account.
fn secret(obj: &mut Value) -> KResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        for (k, v) in sd.as_object().into_iter().flatten() {
            obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or("").as_bytes()));
        }
    }
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            if b64.decode(v.as_str().unwrap_or("")).is_err() {
                return Err(KubeError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0 (key {k})"
                )));
            }
        }
    }
    fill(obj, [("type", json!("Opaque"))]);
    if obj["type"] == "kubernetes.io/service-account-token"
        && obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str().is_none()
    {
        return Err(KubeError::invalid(
            "Secret",
            &name,
            "metadata.annotations[kubernetes.io/service-account.name]",
            "Required value",
        ));
    }
    Ok(())
}

/// The `kubernetes.io/metadata.name` label, the `kubernetes` finalizer, phase Active.
fn namespace(obj: &mut Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if obj["spec"]["finalizers"].is_null() {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    if obj["status"]["phase"].is_null() {
        obj["status"]["phase"] = json!("Active");
    }
}

/// ClusterIP type and address, single-stack IPv4, and each port's protocol and target port.
fn service(inner: &Inner, obj: &mut Value) {
    let spec = &mut obj["spec"];
    fill(spec, [("type", json!("ClusterIP"))]);
    if spec["clusterIP"].is_null() {
        let n = inner.objects.keys().filter(|k| k.1 == "services").count() + 10;
        spec["clusterIP"] = json!(format!("10.96.{}.{}", n / 250, n % 250 + 1));
        spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
    }
    fill(
        spec,
        [
            ("sessionAffinity", json!("None")),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
            ("internalTrafficPolicy", json!("Cluster")),
        ],
    );
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        if p["protocol"].is_null() {
            p["protocol"] = json!("TCP");
        }
        if p["targetPort"].is_null() {
            p["targetPort"] = p["port"].clone();
        }
    }
}

/// Replicas, rollout strategy and history, and the pod template's and containers' defaults.
fn deployment(obj: &mut Value) {
    let spec = &mut obj["spec"];
    fill(
        spec,
        [
            ("replicas", json!(1)),
            ("revisionHistoryLimit", json!(10)),
            ("progressDeadlineSeconds", json!(600)),
            (
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            ),
        ],
    );
    let tspec = &mut spec["template"]["spec"];
    fill(
        tspec,
        [
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("securityContext", json!({})),
        ],
    );
    for c in tspec["containers"].as_array_mut().into_iter().flatten() {
        if c["imagePullPolicy"].is_null() {
            let latest = c["image"].as_str().is_some_and(|i| i.ends_with(":latest") || !i.contains(':'));
            c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
        }
        if c["terminationMessagePath"].is_null() {
            c["terminationMessagePath"] = json!("/dev/termination-log");
            c["terminationMessagePolicy"] = json!("File");
        }
        if c["resources"].is_null() {
            c["resources"] = json!({});
        }
    }
}
