//! The plan is the truth, for every managed type: whatever is changed out of band with gcloud or
//! kubectl on an attribute meshform manages, `drift` reports (exit 2), `plan` shows as a change
//! of that attribute (exit 2), `apply` repairs (read back with gcloud/kubectl), and afterwards
//! both `drift` and `plan --detailed-exitcode` exit 0. One simulator and one apply serve every
//! row; a managed type without a row fails the test. Every server a row points anything at is on
//! loopback.
//!
//! Needs gcloud, kubectl and openssl on PATH (a missing tool fails the test saying so; see
//! .ci/run).

mod common;

use base64::Engine as _;
use common::{Cloud, code, text};
use meshform_engine::provider::{Provider, TypeKind};

const PLAN: &str = r#"
[clusters.cluster-1]
location = "us-central1-a"

[clusters.cluster-2]
location = "europe-west1-b"

[resources.gcp_firewall.fw]
name = "tamper-fw"
priority = 900
allow = [{ protocol = "tcp", ports = ["80"] }]
source_ranges = ["10.0.0.0/8"]

[resources.gcp_global_address.ip]
name = "tamper-ip"
description = "one"
labels = { team = "mesh" }

[resources.gcp_network_endpoint_group.neg]
zone = "us-central1-a"
name = "tamper-neg"
subnetwork = "default"
default_port = 80

[resources.gke_control_plane_access.cp]
location = "us-central1-a"
cluster = "cluster-1"
authorized_networks = ["10.4.0.0/14"]
global_access = false

[resources.gke_fleet_membership.m1]
location = "us-central1"
membership_id = "cluster-1"
gke_cluster = "us-central1-a/cluster-1"
labels = { team = "mesh" }

[resources.gke_fleet_membership.m2]
location = "europe-west1"
membership_id = "cluster-2"
gke_cluster = "europe-west1-b/cluster-2"

[resources.gke_fleet_feature.mci]
name = "multiclusteringress"
config_membership = "${gke_fleet_membership.m1.name}"

[resources.gke_fleet_feature.mesh]
name = "servicemesh"

[resources.gke_fleet_membership_feature.m1]
membership = "${gke_fleet_membership.m1.name}"
management = "MANAGEMENT_AUTOMATIC"
depends_on = ["gke_fleet_feature.mesh"]

[resources.k8s_namespace.ns]
cluster = "cluster-1"
name = "tamper"
labels = { team = "mesh", tier = "one" }

[resources.k8s_secret.creds]
cluster = "cluster-1"
namespace = "tamper"
name = "creds"
data = { password = "hunter2", user = "admin" }
depends_on = ["k8s_namespace.ns"]

[resources.k8s_manifest.app]
cluster = "cluster-1"
yaml = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-a
  namespace: tamper
data:
  mode: blue
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-b
  namespace: tamper
data:
  mode: green
"""
depends_on = ["k8s_namespace.ns"]

[resources.mesh_remote_secret.rs]
source = "cluster-1"
target = "cluster-2"

[resources.mesh_ca.ca]
clusters = ["cluster-1", "cluster-2"]
"#;

/// An out-of-band change.
enum Tamper {
    /// gcloud with these arguments.
    Gcloud(&'static [&'static str]),
    /// kubectl against cluster `i` of the world.
    Kubectl(usize, &'static [&'static str]),
    /// The remote secret's kubeconfig (in cluster-2) edited to point at another loopback server.
    RemoteServer,
    /// cacerts in cluster `i` given a private key that is not its certificate's.
    ForeignCaKey(usize),
    /// The remote secret's token Secret (in the source cluster, cluster-1) deleted: the token
    /// in cluster-2's remote secret is revoked.
    RevokeToken,
}

/// A read-back after the repair: the command's output must (or must not) contain the text.
enum Check {
    Gcloud(&'static [&'static str], Has),
    Kubectl(usize, &'static [&'static str], Has),
    /// The remote secret in cluster-2 points at cluster-1's endpoint again (its kubeconfig decoded).
    RemoteServerRestored,
    /// cacerts in cluster `i` holds the private key of its certificate (compared with openssl).
    CaKeyMatches(usize),
}

enum Has {
    Text(&'static str),
    Not(&'static str),
}

struct Row {
    ty: &'static str,
    addr: &'static str,
    /// The attribute drift and plan must name; None when the tamper deletes the object.
    attr: Option<&'static str>,
    tamper: Tamper,
    check: Check,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn rows() -> Vec<Row> {
    use Check as C;
    use Tamper as T;
    let fw_prio: &[&str] = &["compute", "firewall-rules", "describe", "tamper-fw", "--format=value(priority)"];
    let fw_src: &[&str] = &["compute", "firewall-rules", "describe", "tamper-fw", "--format=value(sourceRanges)"];
    let cp: &[&str] = &["container", "clusters", "describe", "cluster-1", "--zone=us-central1-a", "--format=json"];
    vec![
        Row {
            ty: "gcp_firewall",
            addr: "gcp_firewall.fw",
            attr: Some("priority"),
            tamper: T::Gcloud(&["compute", "firewall-rules", "update", "tamper-fw", "--priority=1000"]),
            check: C::Gcloud(fw_prio, Has::Text("900")),
        },
        Row {
            ty: "gcp_firewall",
            addr: "gcp_firewall.fw",
            attr: Some("source_ranges"),
            tamper: T::Gcloud(&["compute", "firewall-rules", "update", "tamper-fw", "--source-ranges=0.0.0.0/0"]),
            check: C::Gcloud(fw_src, Has::Text("10.0.0.0/8")),
        },
        Row {
            ty: "gcp_firewall",
            addr: "gcp_firewall.fw",
            attr: None,
            tamper: T::Gcloud(&["compute", "firewall-rules", "delete", "tamper-fw", "--quiet"]),
            check: C::Gcloud(fw_prio, Has::Text("900")),
        },
        Row {
            ty: "gcp_firewall",
            addr: "gcp_firewall.fw",
            attr: Some("disabled"),
            tamper: T::Gcloud(&["compute", "firewall-rules", "update", "tamper-fw", "--disabled"]),
            check: C::Gcloud(
                &["compute", "firewall-rules", "describe", "tamper-fw", "--format=value(disabled)"],
                Has::Text("False"),
            ),
        },
        Row {
            ty: "gcp_global_address",
            addr: "gcp_global_address.ip",
            attr: Some("labels"),
            tamper: T::Gcloud(&[
                "beta",
                "compute",
                "addresses",
                "update",
                "tamper-ip",
                "--global",
                "--update-labels=team=other",
            ]),
            check: C::Gcloud(
                &["compute", "addresses", "describe", "tamper-ip", "--global", "--format=value(labels.team)"],
                Has::Text("mesh"),
            ),
        },
        Row {
            ty: "gcp_global_address",
            addr: "gcp_global_address.ip",
            attr: None,
            tamper: T::Gcloud(&["compute", "addresses", "delete", "tamper-ip", "--global", "--quiet"]),
            check: C::Gcloud(
                &["compute", "addresses", "describe", "tamper-ip", "--global", "--format=value(description)"],
                Has::Text("one"),
            ),
        },
        Row {
            ty: "gcp_network_endpoint_group",
            addr: "gcp_network_endpoint_group.neg",
            attr: None,
            tamper: T::Gcloud(&[
                "compute",
                "network-endpoint-groups",
                "delete",
                "tamper-neg",
                "--zone=us-central1-a",
                "--quiet",
            ]),
            check: C::Gcloud(
                &[
                    "compute",
                    "network-endpoint-groups",
                    "describe",
                    "tamper-neg",
                    "--zone=us-central1-a",
                    "--format=value(defaultPort)",
                ],
                Has::Text("80"),
            ),
        },
        Row {
            ty: "gke_control_plane_access",
            addr: "gke_control_plane_access.cp",
            attr: Some("global_access"),
            tamper: T::Gcloud(&[
                "container",
                "clusters",
                "update",
                "cluster-1",
                "--zone=us-central1-a",
                "--enable-master-global-access",
            ]),
            check: C::Gcloud(
                &[
                    "container",
                    "clusters",
                    "describe",
                    "cluster-1",
                    "--zone=us-central1-a",
                    "--format=value(privateClusterConfig.masterGlobalAccessConfig.enabled)",
                ],
                Has::Text("False"),
            ),
        },
        Row {
            ty: "gke_control_plane_access",
            addr: "gke_control_plane_access.cp",
            attr: Some("authorized_networks"),
            tamper: T::Gcloud(&[
                "container",
                "clusters",
                "update",
                "cluster-1",
                "--zone=us-central1-a",
                "--enable-master-authorized-networks",
                "--master-authorized-networks=10.4.0.0/14,198.51.100.0/24",
            ]),
            check: C::Gcloud(cp, Has::Not("198.51.100.0/24")),
        },
        Row {
            ty: "gke_fleet_membership",
            addr: "gke_fleet_membership.m1",
            attr: Some("labels"),
            tamper: T::Gcloud(&[
                "container",
                "fleet",
                "memberships",
                "update",
                "cluster-1",
                "--location=us-central1",
                "--update-labels=team=x",
            ]),
            check: C::Gcloud(
                &[
                    "container",
                    "fleet",
                    "memberships",
                    "describe",
                    "cluster-1",
                    "--location=us-central1",
                    "--format=value(labels.team)",
                ],
                Has::Text("mesh"),
            ),
        },
        Row {
            ty: "gke_fleet_membership",
            addr: "gke_fleet_membership.m2",
            attr: None,
            tamper: T::Gcloud(&[
                "container",
                "fleet",
                "memberships",
                "delete",
                "cluster-2",
                "--location=europe-west1",
                "--quiet",
            ]),
            check: C::Gcloud(
                &[
                    "container",
                    "fleet",
                    "memberships",
                    "describe",
                    "cluster-2",
                    "--location=europe-west1",
                    "--format=value(name)",
                ],
                Has::Text("memberships/cluster-2"),
            ),
        },
        Row {
            ty: "gke_fleet_feature",
            addr: "gke_fleet_feature.mci",
            attr: Some("config_membership"),
            tamper: T::Gcloud(&[
                "container",
                "fleet",
                "ingress",
                "update",
                "--config-membership=projects/meshform-demo/locations/europe-west1/memberships/cluster-2",
            ]),
            check: C::Gcloud(
                &[
                    "container",
                    "fleet",
                    "ingress",
                    "describe",
                    "--format=value(spec.multiclusteringress.configMembership)",
                ],
                Has::Text("locations/us-central1/memberships/cluster-1"),
            ),
        },
        Row {
            ty: "gke_fleet_membership_feature",
            addr: "gke_fleet_membership_feature.m1",
            attr: Some("management"),
            tamper: T::Gcloud(&[
                "container",
                "fleet",
                "mesh",
                "update",
                "--management",
                "manual",
                "--memberships",
                "cluster-1",
                "--location",
                "us-central1",
            ]),
            check: C::Gcloud(
                &["container", "fleet", "mesh", "describe", "--format=json"],
                Has::Text("MANAGEMENT_AUTOMATIC"),
            ),
        },
        Row {
            ty: "k8s_namespace",
            addr: "k8s_namespace.ns",
            attr: Some("labels"),
            tamper: T::Kubectl(0, &["label", "namespace", "tamper", "team=other", "--overwrite"]),
            check: C::Kubectl(
                0,
                &["get", "namespace", "tamper", "-o", "jsonpath={.metadata.labels.team}"],
                Has::Text("mesh"),
            ),
        },
        Row {
            ty: "k8s_namespace",
            addr: "k8s_namespace.ns",
            attr: Some("labels"),
            tamper: T::Kubectl(0, &["label", "namespace", "tamper", "tier-"]),
            check: C::Kubectl(
                0,
                &["get", "namespace", "tamper", "-o", "jsonpath={.metadata.labels.tier}"],
                Has::Text("one"),
            ),
        },
        Row {
            ty: "k8s_secret",
            addr: "k8s_secret.creds",
            attr: Some("data"),
            tamper: T::Kubectl(
                0,
                &["patch", "secret", "creds", "-n", "tamper", "-p", r#"{"data":{"password":"YXR0YWNrZXI="}}"#],
            ),
            check: C::Kubectl(
                0,
                &["get", "secret", "creds", "-n", "tamper", "-o", "jsonpath={.data.password}"],
                Has::Text("aHVudGVyMg=="),
            ),
        },
        Row {
            ty: "k8s_secret",
            addr: "k8s_secret.creds",
            attr: Some("data"),
            tamper: T::Kubectl(0, &["patch", "secret", "creds", "-n", "tamper", "-p", r#"{"data":{"extra":"eA=="}}"#]),
            check: C::Kubectl(
                0,
                &["get", "secret", "creds", "-n", "tamper", "-o", "jsonpath={.data}"],
                Has::Not("extra"),
            ),
        },
        Row {
            ty: "k8s_secret",
            addr: "k8s_secret.creds",
            attr: Some("data"),
            tamper: T::Kubectl(
                0,
                &[
                    "patch",
                    "secret",
                    "creds",
                    "-n",
                    "tamper",
                    "--type=json",
                    "-p",
                    r#"[{"op":"remove","path":"/data/user"}]"#,
                ],
            ),
            check: C::Kubectl(
                0,
                &["get", "secret", "creds", "-n", "tamper", "-o", "jsonpath={.data.user}"],
                Has::Text("YWRtaW4="),
            ),
        },
        Row {
            ty: "k8s_secret",
            addr: "k8s_secret.creds",
            attr: None,
            tamper: T::Kubectl(0, &["delete", "secret", "creds", "-n", "tamper"]),
            check: C::Kubectl(
                0,
                &["get", "secret", "creds", "-n", "tamper", "-o", "jsonpath={.data.user}"],
                Has::Text("YWRtaW4="),
            ),
        },
        Row {
            ty: "k8s_manifest",
            addr: "k8s_manifest.app",
            attr: Some("objects"),
            tamper: T::Kubectl(
                0,
                &["patch", "configmap", "app-a", "-n", "tamper", "-p", r#"{"data":{"mode":"evil"}}"#],
            ),
            check: C::Kubectl(
                0,
                &["get", "configmap", "app-a", "-n", "tamper", "-o", "jsonpath={.data.mode}"],
                Has::Text("blue"),
            ),
        },
        Row {
            ty: "k8s_manifest",
            addr: "k8s_manifest.app",
            attr: Some("objects"),
            tamper: T::Kubectl(0, &["delete", "configmap", "app-b", "-n", "tamper"]),
            check: C::Kubectl(
                0,
                &["get", "configmap", "app-b", "-n", "tamper", "-o", "jsonpath={.data.mode}"],
                Has::Text("green"),
            ),
        },
        Row {
            ty: "mesh_remote_secret",
            addr: "mesh_remote_secret.rs",
            attr: Some("server"),
            tamper: T::RemoteServer,
            check: C::RemoteServerRestored,
        },
        Row {
            ty: "mesh_remote_secret",
            addr: "mesh_remote_secret.rs",
            attr: Some("data_keys"),
            tamper: T::Kubectl(
                1,
                &[
                    "patch",
                    "secret",
                    "istio-remote-secret-cluster-1",
                    "-n",
                    "istio-system",
                    "-p",
                    r#"{"data":{"rogue":"eA=="}}"#,
                ],
            ),
            check: C::Kubectl(
                1,
                &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "jsonpath={.data}"],
                Has::Not("rogue"),
            ),
        },
        Row {
            ty: "mesh_remote_secret",
            addr: "mesh_remote_secret.rs",
            attr: Some("discoverable"),
            tamper: T::Kubectl(
                1,
                &["label", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "istio/multiCluster-"],
            ),
            check: C::Kubectl(
                1,
                &[
                    "get",
                    "secret",
                    "istio-remote-secret-cluster-1",
                    "-n",
                    "istio-system",
                    "-o",
                    "jsonpath={.metadata.labels}",
                ],
                Has::Text("istio/multiCluster"),
            ),
        },
        Row {
            ty: "mesh_remote_secret",
            addr: "mesh_remote_secret.rs",
            attr: Some("token_valid"),
            tamper: T::RevokeToken,
            check: C::Kubectl(
                0,
                &["get", "secrets", "-n", "istio-system", "-o", "name"],
                Has::Text("istio-reader-service-account-istio-remote-secret-token-cluster-2"),
            ),
        },
        Row {
            ty: "mesh_remote_secret",
            addr: "mesh_remote_secret.rs",
            attr: None,
            tamper: T::Kubectl(1, &["delete", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system"]),
            check: C::Kubectl(
                1,
                &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "name"],
                Has::Text("istio-remote-secret-cluster-1"),
            ),
        },
        Row {
            ty: "mesh_ca",
            addr: "mesh_ca.ca",
            attr: Some("intermediates"),
            tamper: T::ForeignCaKey(1),
            check: C::CaKeyMatches(1),
        },
        Row {
            ty: "mesh_ca",
            addr: "mesh_ca.ca",
            attr: Some("intermediates"),
            tamper: T::Kubectl(0, &["delete", "secret", "cacerts", "-n", "istio-system"]),
            check: C::CaKeyMatches(0),
        },
    ]
}

/// Whether the report names the attribute of the object (a diff line), or its deletion.
fn names(t: &str, addr: &str, attr: Option<&str>) -> bool {
    let named = match attr {
        Some(a) => t.lines().any(|l| {
            let l = l.trim_start();
            ["~ ", "+ ", "- "].iter().any(|s| l.starts_with(&format!("{s}{a} ")) || l.starts_with(&format!("{s}{a}=")))
        }),
        None => t.contains("deleted outside meshform"),
    };
    t.contains(addr) && named
}

async fn tamper(c: &Cloud, t: &Tamper) {
    match t {
        Tamper::Gcloud(args) => {
            c.gcloud(args).await;
        }
        Tamper::Kubectl(i, args) => {
            c.kubectl(*i, args).await;
        }
        Tamper::RemoteServer => {
            let name = "istio-remote-secret-cluster-1";
            let o = c.kubectl(1, &["get", "secret", name, "-n", "istio-system", "-o", "json"]).await;
            let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let kc =
                base64::engine::general_purpose::STANDARD.decode(doc["data"]["cluster-1"].as_str().unwrap()).unwrap();
            let kc: String = String::from_utf8(kc)
                .unwrap()
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("server: ") {
                        "    server: https://127.0.0.9:6443".into()
                    } else {
                        l.to_string()
                    }
                })
                .map(|l| l + "\n")
                .collect();
            let patch = serde_json::json!({"data": {"cluster-1": b64(&kc)}}).to_string();
            c.kubectl(1, &["patch", "secret", name, "-n", "istio-system", "-p", &patch]).await;
        }
        Tamper::RevokeToken => {
            let o = c.kubectl(0, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
            let names = String::from_utf8_lossy(&o.stdout).into_owned();
            let token = names.lines().find(|l| l.contains("istio-remote-secret-token")).expect("a token Secret");
            c.kubectl(0, &["delete", "-n", "istio-system", token]).await;
        }
        Tamper::ForeignCaKey(i) => {
            let key = std::process::Command::new(meshform_sim::tools::need("openssl"))
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
                .output()
                .expect("openssl runs");
            assert!(key.status.success());
            let patch =
                serde_json::json!({"data": {"ca-key.pem": b64(&String::from_utf8_lossy(&key.stdout))}}).to_string();
            c.kubectl(*i, &["patch", "secret", "cacerts", "-n", "istio-system", "-p", &patch]).await;
        }
    }
}

/// The kubeconfig in cluster-2's remote secret of cluster-1.
async fn remote_kubeconfig(c: &Cloud) -> String {
    let o = c.kubectl(1, &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kc = base64::engine::general_purpose::STANDARD.decode(doc["data"]["cluster-1"].as_str().unwrap()).unwrap();
    String::from_utf8(kc).unwrap()
}

async fn verify(c: &Cloud, check: &Check) -> (bool, String) {
    match check {
        Check::Gcloud(args, has) => {
            let o = c.gcloud(args).await;
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let ok = match has {
                Has::Text(s) => out.contains(s),
                Has::Not(s) => !out.contains(s),
            };
            (ok, out)
        }
        Check::RemoteServerRestored => {
            let kc = remote_kubeconfig(c).await;
            let server = kc.lines().find(|l| l.trim_start().starts_with("server: ")).unwrap_or("").to_string();
            (!server.contains("127.0.0.9") && server.contains("https://127.0.0.2:"), server)
        }
        Check::CaKeyMatches(i) => {
            let o = c.kubectl(*i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "json"]).await;
            let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let field = |k: &str| {
                base64::engine::general_purpose::STANDARD
                    .decode(doc["data"][k].as_str().unwrap_or(""))
                    .unwrap_or_default()
            };
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("cert.pem"), field("ca-cert.pem")).unwrap();
            std::fs::write(dir.path().join("key.pem"), field("ca-key.pem")).unwrap();
            let openssl = |args: &[&str]| {
                std::process::Command::new(meshform_sim::tools::need("openssl"))
                    .args(args)
                    .current_dir(dir.path())
                    .output()
                    .expect("openssl runs")
                    .stdout
            };
            let from_cert = openssl(&["x509", "-in", "cert.pem", "-noout", "-pubkey"]);
            let from_key = openssl(&["pkey", "-in", "key.pem", "-pubout"]);
            (!from_cert.is_empty() && from_cert == from_key, String::from_utf8_lossy(&from_key).into_owned())
        }
        Check::Kubectl(i, args, has) => {
            let o = c.kubectl(*i, args).await;
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let ok = match has {
                Has::Text(s) => out.contains(s),
                Has::Not(s) => !out.contains(s),
            };
            (ok, out)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_out_of_band_change_is_drift_planned_and_repaired_for_every_managed_type() {
    let rows = rows();
    // Every managed type of every provider has a row (meshform_data has nothing live).
    let providers: Vec<Box<dyn Provider>> =
        vec![Box::new(meshform_gcp::GcpProvider::from_env()), Box::new(meshform_kube::KubeProvider::from_env())];
    for p in &providers {
        for schema in p.schemas().into_iter().filter(|s| s.kind == TypeKind::Managed) {
            assert!(
                rows.iter().any(|r| r.ty == schema.name),
                "managed type `{}` has no row in the tamper table",
                schema.name
            );
        }
    }

    let c = Cloud::default().await;
    c.write(PLAN);
    c.apply().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    for (n, row) in rows.iter().enumerate() {
        let what = format!("row {n} ({} {:?})", row.addr, row.attr);
        tamper(&c, &row.tamper).await;
        let o = c.mf(&["drift", "main.toml"]).await;
        let t = text(&o);
        assert_eq!(code(&o), 2, "{what}: drift did not report it:\n{t}");
        assert!(names(&t, row.addr, row.attr), "{what}: drift must name it:\n{t}");
        let (pc, pt) = c.plan().await;
        assert_eq!(pc, 2, "{what}: plan shows no change:\n{pt}");
        let planned = pt.split("meshform will perform these actions").nth(1).unwrap_or("");
        assert!(planned.contains(row.addr), "{what}: plan does not change {}:\n{pt}", row.addr);
        assert!(!pt.contains("hunter2") && !pt.contains("BEGIN RSA") && !pt.contains("PRIVATE KEY"), "{pt}");
        c.apply().await;
        let (ok, seen) = verify(&c, &row.check).await;
        assert!(ok, "{what}: not restored, read back: {seen}");
        let o = c.mf(&["drift", "main.toml"]).await;
        assert_eq!(code(&o), 0, "{what}: drift after the repair:\n{}", text(&o));
        c.assert_no_changes().await;
    }
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    assert!(!state.contains("hunter2") && !state.contains(&b64("hunter2")), "a secret value is in the state");
}
