//! The Kubernetes provider against the simulated clusters, through the real `meshform` binary,
//! with kubectl making the out-of-band changes.

mod common;

use common::{Cloud, code, text};

fn plan_toml(manifests: &str) -> String {
    format!(
        r#"
[clusters.cluster-1]
location = "us-central1-a"

[clusters.cluster-2]
location = "europe-west1-b"

[resources.k8s_namespace.sample]
for_each = "${{clusters}}"
cluster = "${{each.key}}"
name = "sample"
labels = {{ "istio.io/rev" = "asm-173-3" }}
remove_labels = ["istio-injection"]

[resources.k8s_secret.creds]
cluster = "cluster-1"
namespace = "sample"
name = "creds"
data = {{ password = "hunter2-not-in-state" }}
depends_on = ["k8s_namespace.sample"]

[resources.k8s_manifest.hello]
for_each = "${{clusters}}"
cluster = "${{each.key}}"
file = "{manifests}/helloworld.yaml"
selector = "app=helloworld"
depends_on = ["k8s_namespace.sample"]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_secrets_and_manifests_apply_idempotently_and_repair_drift() {
    let c = Cloud::default().await;
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/manifests");
    c.write(&plan_toml(manifests));
    c.apply().await;
    c.assert_no_changes().await;
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    assert!(!state.contains("hunter2-not-in-state"), "secret data in state");
    let o = c.kubectl(0, &["get", "secret", "creds", "-n", "sample", "-o", "jsonpath={.data.password}"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "aHVudGVyMi1ub3QtaW4tc3RhdGU=");
    let o = c.kubectl(1, &["get", "deploy", "-n", "sample", "-o", "name"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);

    // Out of band: relabel the namespace, change an owned field, add a field of another manager.
    c.kubectl(0, &["label", "ns", "sample", "istio-injection=enabled", "istio.io/rev=other", "--overwrite"]).await;
    c.kubectl(
        0,
        &[
            "patch",
            "svc",
            "helloworld",
            "-n",
            "sample",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"ports":[{"port":5001,"name":"http"}]}}"#,
            "--field-manager=editor",
        ],
    )
    .await;
    c.kubectl(1, &["annotate", "svc", "helloworld", "-n", "sample", "team=edge"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    assert!(
        t.contains("k8s_namespace.sample[\"cluster-1\"]") && t.contains("labels") && t.contains("remove_labels"),
        "{t}"
    );
    assert!(t.contains("k8s_manifest.hello[\"cluster-1\"]") && t.contains("port = 5001"), "{t}");
    assert!(!t.contains("k8s_manifest.hello[\"cluster-2\"]"), "another manager's field is not drift:\n{t}");
    c.apply().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.kubectl(0, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels}"]).await;
    let labels = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(labels.contains("\"istio.io/rev\":\"asm-173-3\"") && !labels.contains("istio-injection"), "{labels}");
    let o = c
        .kubectl(1, &["get", "svc", "helloworld", "-n", "sample", "-o", "jsonpath={.metadata.annotations.team}"])
        .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "edge", "another manager's field is kept");

    // The guide's clean-up step: destroy the sample namespace (and what is in it) only.
    let o = c.mf(&["destroy", "main.toml", "--auto-approve", "--target", "k8s_namespace.sample"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c
        .run("kubectl", &["--context", "gke_meshform-demo_us-central1-a_cluster-1", "get", "ns", "sample"], &[], &[])
        .await;
    assert_ne!(code(&o), 0);
    let o = c.kubectl(0, &["get", "ns", "istio-system", "-o", "name"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "namespace/istio-system");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_and_its_custom_resource_apply_in_one_run() {
    let c = Cloud::default().await;
    c.write(
        r#"
[clusters.cluster-1]
location = "us-central1-a"

[resources.k8s_manifest.crd]
cluster = "cluster-1"
yaml = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
wait_for = { condition = "Established" }

[resources.k8s_manifest.widget]
cluster = "cluster-1"
manifest = { apiVersion = "example.com/v1", kind = "Widget", metadata = { name = "w1", namespace = "default" }, spec = { size = 3 } }
depends_on = ["k8s_manifest.crd"]
"#,
    );
    c.apply().await;
    let o = c.kubectl(0, &["get", "widgets", "w1", "-n", "default", "-o", "jsonpath={.spec.size}"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "3");
    c.assert_no_changes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_and_connections_from_the_gke_lookup() {
    let c = Cloud::default().await;
    c.kubectl(0, &["create", "ns", "existing"]).await;
    c.write("[clusters.cluster-1]\nlocation = \"us-central1-a\"\nconnect = \"gke\"\n\n[resources.k8s_namespace.existing]\ncluster = \"cluster-1\"\nname = \"existing\"\n");
    let o = c.mf(&["import", "main.toml", "k8s_namespace.existing", "cluster-1/existing"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 0, "{t}");
}
