//! The Kubernetes provider against the simulated clusters, through the real `meshform` binary,
//! with kubectl making the out-of-band changes.
//!
//! Needs kubectl and openssl on PATH (a missing tool fails the test saying so; see .ci/run).

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
    // Another manager adds an item inside a list meshform applied (an env var of its container).
    let deploy = String::from_utf8_lossy(&c.kubectl(1, &["get", "deploy", "-n", "sample", "-o", "name"]).await.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    c.kubectl(
        1,
        &[
            "patch",
            &deploy,
            "-n",
            "sample",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/env","value":[{"name":"INJECTED","value":"1"}]}]"#,
            "--field-manager=injector",
        ],
    )
    .await;
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
    let o = c
        .kubectl(1, &["get", &deploy, "-n", "sample", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].name}"])
        .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "INJECTED", "another manager's list item is kept");

    // The guide's clean-up step: destroy the sample namespace (and what is in it) only.
    let o = c.mf(&["destroy", "main.toml", "--auto-approve", "--target", "k8s_namespace.sample"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!c.exists(0, &["ns", "sample"]).await, "the sample namespace is gone");
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
    // With no token in the environment and no kubeconfig: Application Default Credentials.
    let key = c.service_account_key();
    c.sim.clear_log();
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["plan", "main.toml", "--detailed-exitcode"],
            &["MESHFORM_GCP_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN", "KUBECONFIG"],
            &[("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string())],
        )
        .await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(c.sim.log().iter().any(|l| l.path == "/token" && l.status == 200), "a token from the key");
    assert!(!text(&o).contains("sim-sa-"), "tokens never appear in output");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_that_skips_tls_verification_is_refused() {
    let c = Cloud::default().await;
    let kc = std::fs::read_to_string(c.dir.path().join("kubeconfig")).unwrap();
    let insecure: String = kc
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("certificate-authority-data:") {
                l.split("certificate-authority-data:").next().unwrap().to_string() + "insecure-skip-tls-verify: true"
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(c.dir.path().join("insecure"), insecure).unwrap();
    c.write("[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.k8s_namespace.n]\ncluster = \"cluster-1\"\nname = \"n\"\n");
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["apply", "main.toml", "--auto-approve"],
            &["KUBECONFIG"],
            &[("KUBECONFIG", c.dir.path().join("insecure").display().to_string())],
        )
        .await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("insecure-skip-tls-verify"), "{}", text(&o));
    assert!(!c.exists(0, &["ns", "n"]).await, "nothing was created");
}

const MESH: &str = r#"
[clusters.cluster-1]
location = "us-central1-a"

[clusters.cluster-2]
location = "europe-west1-b"

[variables.rotation]
default = "first"

[variables.rotate]
default = false

[resources.mesh_remote_secret.crosswise]
for_each = "${pairs(clusters)}"
source = "${each.value[0]}"
target = "${each.value[1]}"
rotation = "${var.rotation}"
rotate = "${var.rotate}"

[[checks]]
name = "remote secrets authenticate"
for_each = "${pairs(clusters)}"
kind = "remote_secret_auth"
source = "${each.value[0]}"
target = "${each.value[1]}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn remote_secrets_match_istioctl_work_rotate_and_repair() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let c = Cloud::default().await;
    c.write(MESH);
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("ok   remote secrets authenticate[\"cluster-1,cluster-2\"]"), "{}", text(&o));
    c.assert_no_changes().await;

    // What istioctl create-remote-secret --context=cluster-1 --name=cluster-1 writes into cluster-2.
    let o = c.kubectl(1, &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "json"]).await;
    let secret: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(secret["metadata"]["labels"]["istio/multiCluster"], "true");
    assert_eq!(secret["metadata"]["annotations"]["networking.istio.io/cluster"], "cluster-1");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"].as_object().unwrap().len(), 1);
    let kc = String::from_utf8(b64.decode(secret["data"]["cluster-1"].as_str().unwrap()).unwrap()).unwrap();
    let o = c.kubectl(0, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    let token_secret = listing
        .lines()
        .filter_map(|l| l.strip_prefix("secret/"))
        .find(|n| n.starts_with("istio-reader-service-account-istio-remote-secret-token-cluster-2"))
        .unwrap_or_else(|| panic!("no token secret for cluster-2: {listing}"))
        .to_string();
    let token_secret = token_secret.as_str();
    let o = c.kubectl(0, &["get", "secret", token_secret, "-n", "istio-system", "-o", "json"]).await;
    let tok: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tok["type"], "kubernetes.io/service-account-token");
    assert_eq!(tok["metadata"]["annotations"]["kubernetes.io/service-account.name"], "istio-reader-service-account");
    let token = String::from_utf8(b64.decode(tok["data"]["token"].as_str().unwrap()).unwrap()).unwrap();
    let ca = tok["data"]["ca.crt"].as_str().unwrap();
    let private = c.sim.clusters[0].private_endpoint.clone().unwrap();
    let expected = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{private}\n  name: cluster-1\ncontexts:\n- context:\n    cluster: cluster-1\n    user: cluster-1\n  name: cluster-1\ncurrent-context: cluster-1\nkind: Config\npreferences: {{}}\nusers:\n- name: cluster-1\n  user:\n    token: {token}\n"
    );
    assert_eq!(kc, expected);
    // And it works with kubectl against cluster-1's private endpoint.
    let path = c.dir.path().join("remote.kubeconfig");
    std::fs::write(&path, &kc).unwrap();
    let o = c
        .run("kubectl", &["--kubeconfig", path.to_str().unwrap(), "get", "services", "-n", "istio-system"], &[], &[])
        .await;
    assert!(code(&o) == 0 && text(&o).contains("istiod"), "{}", text(&o));
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    assert!(!state.contains(&token), "a token reached the state");

    // Deleted out of band: drift names it, apply repairs it.
    c.kubectl(1, &["delete", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert!(
        code(&o) == 2 && text(&o).contains("mesh_remote_secret.crosswise[\"cluster-1,cluster-2\"]"),
        "{}",
        text(&o)
    );
    c.apply().await;
    c.assert_no_changes().await;

    // The token Secret deleted (the token revoked): drift names the remote secret, apply makes a
    // new token under the same name and the remote secret works again.
    c.kubectl(0, &["delete", "secret", token_secret, "-n", "istio-system"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert!(code(&o) == 2 && text(&o).contains("token_valid"), "{}", text(&o));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("ok   remote secrets authenticate[\"cluster-1,cluster-2\"]"), "{}", text(&o));
    c.assert_no_changes().await;
    let o = c.kubectl(1, &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "json"]).await;
    let secret: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kc = String::from_utf8(b64.decode(secret["data"]["cluster-1"].as_str().unwrap()).unwrap()).unwrap();
    std::fs::write(&path, &kc).unwrap();

    // Rotation: new token Secret, remote secret switched, then the old token deleted.
    for k in &c.sim.kube {
        k.log.lock().unwrap().clear();
    }
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--var", "rotation=second"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let target_log = c.sim.kube[1].log.lock().unwrap().clone();
    let source_log = c.sim.kube[0].log.lock().unwrap().clone();
    let switched = target_log
        .iter()
        .filter(|e| e.0 == "PATCH" && e.1.contains("/secrets/istio-remote-secret-cluster-1"))
        .map(|e| e.3)
        .max()
        .unwrap();
    let revoked = source_log
        .iter()
        .find(|e| e.0 == "DELETE" && e.1.contains(&format!("/secrets/{token_secret}")))
        .map(|e| e.3)
        .unwrap();
    assert!(switched < revoked, "the old token was deleted before the remote secret stopped using it");
    let o = c.run("kubectl", &["--kubeconfig", path.to_str().unwrap(), "get", "ns"], &[], &[]).await;
    assert!(text(&o).contains("Unauthorized"), "the old token is revoked: {}", text(&o));
    let o = c.mf(&["drift", "main.toml", "--var", "rotation=second"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));

    // `rotate = true` for one run rotates every pair; afterwards nothing is left to do.
    let token_secrets = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter_map(|l| l.strip_prefix("secret/"))
            .filter(|n| n.starts_with("istio-reader-service-account-istio-remote-secret-token-"))
            .map(String::from)
            .collect()
    };
    let before = token_secrets(&kubectl_names(&c, 0).await);
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--var", "rotation=second", "--var", "rotate=true"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("ok   remote secrets authenticate[\"cluster-1,cluster-2\"]"), "{}", text(&o));
    let after = token_secrets(&kubectl_names(&c, 0).await);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.iter().all(|b| !after.contains(b)), "rotated: {before:?} → {after:?}");
    let o = c.mf(&["plan", "main.toml", "--detailed-exitcode", "--var", "rotation=second"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
}

async fn kubectl_names(c: &Cloud, i: usize) -> String {
    String::from_utf8_lossy(&c.kubectl(i, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await.stdout)
        .into_owned()
}

fn ca_plan(clusters: &[&str]) -> String {
    let decl: String = ["cluster-1", "cluster-2", "cluster-3"]
        .iter()
        .zip(["us-central1-a", "europe-west1-b", "us-central1-b"])
        .map(|(c, l)| format!("[clusters.{c}]\nlocation = \"{l}\"\n\n"))
        .collect();
    let list: Vec<String> = clusters.iter().map(|c| format!("\"{c}\"")).collect();
    format!("{decl}[resources.mesh_ca.ca]\nclusters = [{}]\n", list.join(", "))
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_ca_certificates_chain_to_one_root_and_keep_keys_out_of_state() {
    use base64::Engine as _;
    let mut w = meshform_sim::world::World::default();
    let mut third = w.clusters[0].clone();
    third.name = "cluster-3".into();
    third.location = "us-central1-b".into();
    third.pod_cidr = "10.8.0.0/14".into();
    w.clusters.push(third);
    let c = Cloud::start(meshform_sim::SimOptions { world: w, ..Default::default() }).await;
    c.write(&ca_plan(&["cluster-1", "cluster-2"]));
    let plan = c.mf(&["plan", "main.toml"]).await;
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.assert_no_changes().await;

    let file = |dir: &std::path::Path, name: &str, data: &serde_json::Value| {
        let pem = base64::engine::general_purpose::STANDARD.decode(data[name].as_str().unwrap()).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, &pem).unwrap();
        (p, String::from_utf8(pem).unwrap())
    };
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new(meshform_sim::tools::need("openssl")).args(args).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let mut keys = Vec::new();
    let mut fingerprints = Vec::new();
    for i in 0..2 {
        let o = c.kubectl(i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "json"]).await;
        let data = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["data"].clone();
        let dir = c.dir.path().join(format!("certs-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (root, _) = file(&dir, "root-cert.pem", &data);
        let (ca, ca_pem) = file(&dir, "ca-cert.pem", &data);
        let (_, chain) = file(&dir, "cert-chain.pem", &data);
        let (_, key) = file(&dir, "ca-key.pem", &data);
        keys.push(key);
        fingerprints.push(ca_pem.clone());
        assert!(chain.starts_with(&ca_pem), "cert-chain.pem is ca-cert.pem then root-cert.pem");
        let verify = openssl(&["verify", "-CAfile", root.to_str().unwrap(), ca.to_str().unwrap()]);
        assert!(verify.contains(": OK"), "{verify}");
        let text = openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
        assert!(text.contains("DNS:istiod.istio-system.svc"), "{text}");
        assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
        // Istio's tools/certs extensions and validity: critical key usage, 730 days from signing.
        assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
        assert!(text.contains("Digital Signature, Non Repudiation, Key Encipherment, Certificate Sign"), "{text}");
        let ca_path = ca.to_str().unwrap();
        let expires_within = |secs: u64| {
            !openssl(&["x509", "-in", ca_path, "-noout", "-checkend", &secs.to_string()]).contains("will not expire")
        };
        assert!(!expires_within(730 * 86_400 - 600) && expires_within(730 * 86_400 + 600), "730 days");
        let start = openssl(&["x509", "-in", ca_path, "-noout", "-startdate", "-dateopt", "iso_8601"]);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let today = meshform_engine::clock::rfc3339(now)[..10].to_string();
        let yesterday = meshform_engine::clock::rfc3339(now - 3600)[..10].to_string();
        assert!(start.contains(&today) || start.contains(&yesterday), "not backdated: {start}");
        assert!(
            text.contains("O=Istio, CN=Intermediate CA, L=cluster-")
                || text.contains("O = Istio, CN = Intermediate CA, L = cluster-"),
            "{text}"
        );
        let root_text = openssl(&["x509", "-in", root.to_str().unwrap(), "-noout", "-text"]);
        assert!(
            root_text.contains("O=Istio, CN=Root CA") || root_text.contains("O = Istio, CN = Root CA"),
            "{root_text}"
        );
    }
    // No private key byte in plan, state or output.
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    for out in [text(&plan), text(&o), state] {
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        for key in &keys {
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("");
            assert!(!out.contains(&body[..64]), "a private key leaked");
        }
    }
    // A third cluster gets one new intermediate from the same root; the others keep theirs.
    c.write(&ca_plan(&["cluster-1", "cluster-2", "cluster-3"]));
    c.apply().await;
    c.assert_no_changes().await;
    let o =
        c.kubectl(0, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data.ca-cert\\.pem}"]).await;
    let again =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(o.stdout.trim_ascii()).unwrap()).unwrap();
    assert_eq!(again, fingerprints[0], "cluster-1's intermediate was kept");
    let r1 = c
        .kubectl(0, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data.root-cert\\.pem}"])
        .await;
    let r3 = c
        .kubectl(2, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data.root-cert\\.pem}"])
        .await;
    assert_eq!(r1.stdout, r3.stdout, "one root");
    // Import by the root cluster: the next apply adopts the cacerts that chain to that root,
    // issuing nothing new.
    let o = c.mf(&["state", "rm", "main.toml", "mesh_ca.ca"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.mf(&["import", "main.toml", "mesh_ca.ca", "cluster-1"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.apply().await;
    c.assert_no_changes().await;
    let o =
        c.kubectl(0, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data.ca-cert\\.pem}"]).await;
    let adopted =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(o.stdout.trim_ascii()).unwrap()).unwrap();
    assert_eq!(adopted, fingerprints[0], "the import kept cluster-1's intermediate");
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        !c.exists(0, &["secret", "istio-root-ca", "-n", "istio-system"]).await,
        "the generated root key goes with the CA"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_imports_and_lookups() {
    let c = Cloud::default().await;
    let plan = |pw: &str| {
        format!(
            r#"
[clusters.cluster-1]
location = "us-central1-a"

[clusters.cluster-2]
location = "europe-west1-b"

[data.k8s_objects.istiod]
cluster = "cluster-1"
kind = "Pod"
namespace = "istio-system"
label_selector = "app=istiod"

[resources.k8s_namespace.sample]
cluster = "cluster-1"
name = "sample"
labels = {{ "istio.io/rev" = '${{data.k8s_objects.istiod.labels[data.k8s_objects.istiod.names[0]]["istio.io/rev"]}}' }}

[resources.k8s_secret.creds]
cluster = "cluster-1"
namespace = "sample"
name = "creds"
data = {{ password = "{pw}" }}
depends_on = ["k8s_namespace.sample"]

[resources.k8s_manifest.cm]
cluster = "cluster-1"
manifest = {{ apiVersion = "v1", kind = "ConfigMap", metadata = {{ name = "cfg", namespace = "sample" }}, data = {{ mode = "a" }} }}
depends_on = ["k8s_namespace.sample"]

[resources.k8s_manifest.templated]
cluster = "cluster-1"
file = "templated.yaml"

[resources.mesh_remote_secret.r]
source = "cluster-1"
target = "cluster-2"
"#
        )
    };
    // A manifest file with references: the namespace it names and the revision read live.
    std::fs::write(
        c.dir.path().join("templated.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: templated\n  namespace: ${k8s_namespace.sample.name}\ndata:\n  revision: ${k8s_namespace.sample.labels[\"istio.io/rev\"]}\n",
    )
    .unwrap();
    c.write(&plan("one"));
    c.apply().await;
    let o = c.kubectl(0, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "asm-173-3", "the revision label read live from istiod");
    let o = c.kubectl(0, &["get", "cm", "templated", "-n", "sample", "-o", "jsonpath={.data.revision}"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "asm-173-3", "rendered from the template");
    c.write(&plan("two"));
    let (rc, t) = c.plan().await;
    assert!(
        rc == 2
            && t.contains("~ k8s_secret.creds")
            && t.contains("(sensitive value changed: password changed)")
            && !t.contains("two"),
        "{t}"
    );
    c.apply().await;
    c.assert_no_changes().await;
    for (addr, id) in [
        ("k8s_secret.creds", "cluster-1/sample/creds".to_string()),
        ("k8s_manifest.cm", "cluster-1;v1;ConfigMap;sample;cfg".to_string()),
        ("mesh_remote_secret.r", "cluster-1/cluster-2".to_string()),
        ("k8s_namespace.sample", "cluster-1/sample".to_string()),
    ] {
        let o = c.mf(&["state", "rm", "main.toml", addr]).await;
        assert_eq!(code(&o), 0, "{}", text(&o));
        let o = c.mf(&["import", "main.toml", addr, &id]).await;
        assert_eq!(code(&o), 0, "import {addr}: {}", text(&o));
    }
    // After imports, one apply takes ownership where needed; then nothing differs.
    c.apply().await;
    c.assert_no_changes().await;
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        !c.exists(1, &["secret", "istio-remote-secret-cluster-1", "-n", "istio-system"]).await,
        "the remote secret is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_with_a_secret_and_a_deployment_is_stable() {
    let c = Cloud::default().await;
    let hello =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/manifests/helloworld.yaml")).unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-creds\n  namespace: istio-system\nstringData:\n  token: mixed-secret-value\n---\n{}",
        hello.replace("namespace: sample", "namespace: istio-system")
    );
    std::fs::write(c.dir.path().join("mixed.yaml"), yaml).unwrap();
    c.write("[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.k8s_manifest.mixed]\ncluster = \"cluster-1\"\nfile = \"mixed.yaml\"\n");
    c.apply().await;
    c.assert_no_changes().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    assert!(!state.contains("mixed-secret-value") && !state.contains("bWl4ZWQtc2VjcmV0LXZhbHVl"), "{state}");
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!c.exists(0, &["secret", "app-creds", "-n", "istio-system"]).await, "destroyed");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_read_by_lookups_or_imported_as_manifests_stay_secret() {
    let c = Cloud::default().await;
    // A Secret made by hand with client-side apply: its data is also in the last-applied annotation.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hand-made\n  namespace: istio-system\nstringData:\n  password: s3cr3t-hand-made-value\n";
    std::fs::write(c.dir.path().join("secret.yaml"), secret).unwrap();
    c.kubectl(0, &["apply", "-f", "secret.yaml"]).await;
    let encoded = "czNjcjN0LWhhbmQtbWFkZS12YWx1ZQ"; // base64 of the value, without padding
    c.write(
        r#"
[clusters.cluster-1]
location = "us-central1-a"

[data.k8s_object.one]
cluster = "cluster-1"
kind = "Secret"
namespace = "istio-system"
name = "hand-made"

[data.k8s_objects.all]
cluster = "cluster-1"
kind = "Secret"
namespace = "istio-system"

[resources.k8s_manifest.adopted]
cluster = "cluster-1"
manifest = { apiVersion = "v1", kind = "Secret", metadata = { name = "hand-made", namespace = "istio-system", labels = { owner = "meshform" } } }

[outputs.object]
value = "${data.k8s_object.one.object}"

[outputs.annotations]
value = "${data.k8s_objects.all.annotations}"
"#,
    );
    let o = c.mf(&["import", "main.toml", "k8s_manifest.adopted", "cluster-1;v1;Secret;istio-system;hand-made"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mut seen = vec![text(&o)];
    for args in [
        &["plan", "main.toml", "--out", "saved.plan"][..],
        &["plan", "main.toml", "--format", "json"],
        &["plan", "main.toml", "--format", "markdown"],
        &["apply", "main.toml", "--auto-approve"],
        &["drift", "main.toml"],
        &["state", "show", "main.toml", "k8s_manifest.adopted"],
    ] {
        let o = c.mf(args).await;
        assert!(code(&o) == 0 || code(&o) == 2, "{args:?}: {}", text(&o));
        seen.push(text(&o));
    }
    for f in ["main.state.json", "saved.plan"] {
        seen.push(String::from_utf8_lossy(&std::fs::read(c.dir.path().join(f)).unwrap()).into_owned());
    }
    for t in &seen {
        assert!(!t.contains("s3cr3t-hand-made") && !t.contains(encoded), "secret data leaked:\n{t}");
    }
    // The values are there, only hidden.
    assert!(seen[4].contains("object") && seen[4].contains("(sensitive)"), "{}", seen[4]);
    // With only a hash of what was applied in state, drift and destroy still find the object.
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.kubectl(0, &["label", "secret", "hand-made", "-n", "istio-system", "owner=someone-else", "--overwrite"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert!(code(&o) == 2 && text(&o).contains("k8s_manifest.adopted"), "{}", text(&o));
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        !c.exists(0, &["secret", "hand-made", "-n", "istio-system"]).await,
        "the adopted Secret is deleted by destroy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_kubeconfig_context_fails_plan_and_bad_yaml_fails_validate_at_the_yaml_line() {
    let c = Cloud::default().await;
    c.write(
        "[clusters.cluster-1]\nlocation = \"us-central1-a\"\ncontext = \"no-such-context\"\n\n[resources.k8s_namespace.a]\ncluster = \"cluster-1\"\nname = \"a\"\n",
    );
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 1, "{t}");
    assert!(t.contains("main.toml:") && t.contains("no-such-context"), "the plan must fail naming the context:\n{t}");
    assert!(!c.dir.path().join("main.state.json").exists() || !t.contains("Plan:"), "{t}");

    std::fs::write(
        c.dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${k8s_namespace.a.name}\n  labels: [unclosed\ndata: {}\n",
    )
    .unwrap();
    c.write(
        "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.k8s_namespace.a]\ncluster = \"cluster-1\"\nname = \"a\"\n\n[resources.k8s_manifest.m]\ncluster = \"cluster-1\"\nfile = \"bad.yaml\"\n",
    );
    let o = c.mf(&["validate", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("invalid YAML in a manifest file") && t.contains("bad.yaml:6:"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_remote_secret_is_a_finding_of_drift_and_plan_and_is_never_deleted() {
    let c = Cloud::default().await;
    c.write("[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[clusters.cluster-2]\nlocation = \"europe-west1-b\"\n\n[resources.mesh_remote_secret.r]\nsource = \"cluster-1\"\ntarget = \"cluster-2\"\n");
    c.apply().await;
    // A state recorded by a version that did not read `data_keys` yet: a computed attribute new
    // to the record is neither drift nor a change.
    let path = c.dir.path().join("main.state.json");
    let old = std::fs::read_to_string(&path).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&old).unwrap();
    let mut removed = 0;
    let objects = doc["objects"].as_array_mut().map(|a| a.iter_mut().collect::<Vec<_>>());
    for o in objects.unwrap_or_default() {
        removed += usize::from(o["attributes"].as_object_mut().unwrap().remove("data_keys").is_some());
    }
    assert_eq!(removed, 1, "{old}");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.assert_no_changes().await;
    // A rogue cluster's credentials, trusted by istiod in cluster-2.
    c.kubectl(
        1,
        &[
            "create",
            "secret",
            "generic",
            "istio-remote-secret-rogue",
            "-n",
            "istio-system",
            "--from-literal=rogue=apiVersion: v1",
        ],
    )
    .await;
    c.kubectl(1, &["label", "secret", "istio-remote-secret-rogue", "-n", "istio-system", "istio/multiCluster=true"])
        .await;
    let o = c.mf(&["drift", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    assert!(t.contains("istio-system/istio-remote-secret-rogue") && t.contains("not managed by meshform"), "{t}");
    let o = c.mf(&["drift", "main.toml", "--format", "json"]).await;
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["findings"][0]["kind"], "unmanaged_remote_secret", "{j}");
    let (rc, t) = c.plan().await;
    assert!(
        rc == 0 && t.contains("Found, and not changed by this plan") && t.contains("istio-remote-secret-rogue"),
        "{t}"
    );
    c.apply().await;
    assert!(
        c.exists(1, &["secret", "istio-remote-secret-rogue", "-n", "istio-system"]).await,
        "a plan never deletes it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_manifest_object_is_planned_as_delete_and_create_and_adoption_is_its_own_action() {
    let c = Cloud::default().await;
    let plan = |name: &str, cbd: bool| {
        let lifecycle = if cbd { "lifecycle = { create_before_destroy = true }\n" } else { "" };
        format!(
            "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.k8s_namespace.istio]\ncluster = \"cluster-1\"\nname = \"istio-system\"\nlabels = {{ team = \"mesh\" }}\n\n[resources.k8s_manifest.rev]\ncluster = \"cluster-1\"\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"{name}\", namespace = \"istio-system\" }}, data = {{ a = \"1\" }} }}\ndepends_on = [\"k8s_namespace.istio\"]\n{lifecycle}"
        )
    };
    // istio-system exists in the world: adopted, not created.
    c.write(&plan("rev-1-14-1", false));
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains("<+ k8s_namespace.istio") && t.contains("adopt an existing object"), "{t}");
    assert!(t.contains("Plan: 1 to adopt, 1 to add, 0 to change, 0 to destroy."), "{t}");
    let o = c.mf(&["plan", "main.toml", "--format", "json"]).await;
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ns = j["changes"].as_array().unwrap().iter().find(|x| x["address"] == "k8s_namespace.istio").unwrap().clone();
    assert_eq!(ns["action"], "adopt", "{ns}");
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert!(code(&o) == 0 && text(&o).contains("adopted"), "{}", text(&o));

    // A renamed object: its delete and the new one's create, with the reason and the order.
    c.write(&plan("rev-1-15-0", false));
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains("- ConfigMap istio-system/rev-1-14-1") && t.contains("deleted first"), "{t}");
    assert!(t.contains("+ ConfigMap istio-system/rev-1-15-0"), "{t}");
    assert!(t.contains("Inside manifests: 1 object(s) to create, 1 to delete."), "{t}");
    c.apply().await;
    assert!(!c.exists(0, &["configmap", "rev-1-14-1", "-n", "istio-system"]).await);
    assert!(c.exists(0, &["configmap", "rev-1-15-0", "-n", "istio-system"]).await);
    c.assert_no_changes().await;
    c.write(&plan("rev-1-16-0", true));
    let (_, t) = c.plan().await;
    assert!(t.contains("which is created first (create_before_destroy)"), "{t}");
    c.apply().await;
    assert!(c.exists(0, &["configmap", "rev-1-16-0", "-n", "istio-system"]).await);
    assert!(!c.exists(0, &["configmap", "rev-1-15-0", "-n", "istio-system"]).await);

    // Destroying the adopted namespace releases it: planned and reported as such, and kept.
    let o = c.mf(&["plan", "main.toml", "--destroy"]).await;
    assert!(text(&o).contains("release (the object is kept)"), "{}", text(&o));
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert!(code(&o) == 0 && text(&o).contains("released"), "{}", text(&o));
    assert!(c.exists(0, &["namespace", "istio-system"]).await, "an adopted namespace is kept");
}

/// Health gates: apply waits until a Deployment is Available (the plan says so in `waits`); a
/// rollout that cannot progress fails the apply with a clear message naming the object; once
/// applied, an object that becomes unhealthy is a finding of drift (exit 2); `wait_for = false`
/// opts out.
#[tokio::test(flavor = "multi_thread")]
async fn deployments_are_waited_on_until_available_and_unhealthy_ones_are_findings() {
    let c = Cloud::default().await;
    let deployment = |name: &str, wait: &str| {
        format!(
            r#"
[resources.k8s_manifest.{name}]
cluster = "cluster-1"
{wait}
yaml = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {{ app: {name} }}
  template:
    metadata:
      labels: {{ app: {name} }}
    spec:
      containers:
      - name: app
        image: registry.example/{name}:1
"""
timeouts = {{ create = "3s", update = "3s" }}
"#
        )
    };
    let base = "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n";
    c.write(&format!("{base}{}", deployment("web", "")));
    let (rc, plan) = c.plan().await;
    assert_eq!(rc, 2, "{plan}");
    assert!(plan.contains("+ waits   = [\"Deployment default/web: Available\"]"), "the plan shows the wait:\n{plan}");
    c.apply().await;
    c.assert_no_changes().await;

    // A rollout that never progresses: the apply fails, naming the object and why.
    c.sim.kube[0].stall_rollout("default", "stuck", true);
    c.write(&format!("{base}{}{}", deployment("web", ""), deployment("stuck", "")));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("will not become Available: its rollout is not progressing: ReplicaSet"), "{}", text(&o));
    // Opting out: the same stalled Deployment applies, and drift reports it unhealthy.
    c.write(&format!("{base}{}{}", deployment("web", ""), deployment("stuck", "wait_for = false")));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "opted out, so no finding: {}", text(&o));

    // web stops being available (its rollout stalls on the next change of its pods).
    c.sim.kube[0].stall_rollout("default", "web", true);
    c.kubectl(0, &["set", "image", "deployment/web", "-n", "default", "app=registry.example/web:2"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("Deployment default/web is not Available"), "{}", text(&o));
}

/// Plugin CA certificates close to their expiry are a finding of drift (exit 2), each naming its
/// cluster, file and subject: with a window longer than the intermediates' 730 days, both
/// intermediates are found and the 10-year root is not; with the default 30 days, nothing is.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_ca_certificates_expiring_within_the_window_are_findings() {
    let c = Cloud::default().await;
    let plan = |window: &str| {
        format!(
            "[providers.kubernetes]\n{window}\n[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[clusters.cluster-2]\nlocation = \"europe-west1-b\"\n\n[resources.mesh_ca.ca]\nclusters = [\"cluster-1\", \"cluster-2\"]\n"
        )
    };
    c.write(&plan(""));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "nothing expires within 30 days: {}", text(&o));
    c.write(&plan("ca_expiry_warning_days = 800"));
    let o = c.mf(&["drift", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    for cluster in ["cluster-1", "cluster-2"] {
        let line = t
            .lines()
            .find(|l| l.contains(&format!("cluster `{cluster}`: istio-system/cacerts ca-cert.pem")))
            .unwrap_or_else(|| panic!("{t}"));
        assert!(
            line.contains("CN=Intermediate CA")
                && (line.contains("expires in 729 days") || line.contains("expires in 730 days"))
                && line.contains("800 days"),
            "{line}"
        );
    }
    assert!(!t.contains("CN=Root CA"), "the root lasts ten years: {t}");
    let o = c.mf(&["drift", "main.toml", "--format", "json"]).await;
    assert!(text(&o).contains("certificate_expiring"), "{}", text(&o));
}

/// A cluster's cacerts as PEM texts: (the root its chain ends in, its trust bundle's roots,
/// its intermediate).
async fn cacerts(c: &Cloud, i: usize) -> (String, Vec<String>, String) {
    use base64::Engine as _;
    let o = c.kubectl(i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data}"]).await;
    let data: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = |k: &str| {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data[k].as_str().unwrap()).unwrap()).unwrap()
    };
    let split =
        |pem: String| -> Vec<String> { pem.split_inclusive("-----END CERTIFICATE-----\n").map(String::from).collect() };
    let chain = split(file("cert-chain.pem"));
    assert_eq!(chain.len(), 2, "intermediate, then its root");
    (chain[1].clone(), split(file("root-cert.pem")), file("ca-cert.pem"))
}

/// Plugin CA rotation without a window of distrust. Rotating the intermediates reissues each
/// from the same root, bundle untouched. A root rotates in three applies — trust the new root
/// beside the old, sign with it, drop the old — and at every step every workload, whether it
/// holds the certificates and bundle from before the step or after it, can verify every other
/// cluster's chain. Jumping straight to a new root is refused at plan, naming the step to take;
/// the old root's key is deleted once it is no longer trusted.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_ca_rotates_intermediates_and_the_root_without_a_window_of_distrust() {
    let c = Cloud::default().await;
    let plan = |extra: &str| {
        format!(
            "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[clusters.cluster-2]\nlocation = \"europe-west1-b\"\n\n[resources.mesh_ca.ca]\nclusters = [\"cluster-1\", \"cluster-2\"]\n{extra}\n"
        )
    };
    let snapshot = async || {
        let mut v = Vec::new();
        for i in 0..2 {
            v.push(cacerts(&c, i).await);
        }
        v
    };
    // Every chain of `a` and `b` ends in a root every bundle of `a` and `b` holds.
    let trusted_across = |a: &[(String, Vec<String>, String)], b: &[(String, Vec<String>, String)]| {
        for (root, _, _) in a.iter().chain(b) {
            for (_, bundle, _) in a.iter().chain(b) {
                assert!(bundle.contains(root), "a chain's root missing from a bundle during the step");
            }
        }
    };
    let step = async |extra: &str| {
        c.write(&plan(extra));
        let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
        assert_eq!(code(&o), 0, "{}", text(&o));
        c.assert_no_changes().await;
    };
    step("").await;
    let first = snapshot().await;

    // Intermediates: new ones, the same root and bundle.
    c.write(&plan("intermediate_version = 2"));
    let (rc, t) = c.plan().await;
    assert!(rc == 2 && t.contains("~ intermediate_version = 1 -> 2") && t.contains("(known after apply)"), "{t}");
    step("intermediate_version = 2").await;
    let rotated = snapshot().await;
    for (a, b) in first.iter().zip(&rotated) {
        assert_ne!(a.2, b.2, "a new intermediate");
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "the same root and bundle");
    }
    trusted_across(&first, &rotated);

    // Straight to a new root: refused at plan, nothing changed.
    c.write(&plan("intermediate_version = 2\nroot_version = 2\ntrusted_root_versions = [2]"));
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 1, "{t}");
    assert!(t.contains("root_version 2 is not yet trusted") && t.contains("trusted_root_versions = [1, 2]"), "{t}");
    assert_eq!(snapshot().await, rotated);

    let mut before = rotated;
    for (extra, signer_changes) in [
        ("trusted_root_versions = [1, 2]", false),
        ("root_version = 2\ntrusted_root_versions = [1, 2]", true),
        ("root_version = 2\ntrusted_root_versions = [2]", false),
    ] {
        step(&format!("intermediate_version = 2\n{extra}")).await;
        let after = snapshot().await;
        trusted_across(&before, &after);
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.0 != b.0, signer_changes, "{extra}: the signing root changes only when switched");
        }
        before = after;
    }
    let (root2, bundle, _) = &before[0];
    assert_eq!(bundle, &vec![root2.clone()], "only the new root is trusted at the end");
    assert!(!first.iter().any(|(r, _, _)| r == root2), "a new root");
    let names = kubectl_names(&c, 0).await;
    assert!(
        names.contains("secret/istio-root-ca-v2") && !names.contains("secret/istio-root-ca\n"),
        "the old root's key is gone: {names}"
    );
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// A cluster that leaves [clusters] while objects of the state live in it: the state recorded how
/// to look it up, so its objects are deleted; when it is not found any more (gone), its objects
/// are forgotten with an action of their own, shown in the plan; a lookup that fails otherwise
/// fails the plan naming the cluster and the ways out, changing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn objects_in_a_cluster_that_left_are_deleted_forgotten_when_gone_or_named() {
    let c = Cloud::default().await;
    let both = "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[clusters.cluster-2]\nlocation = \"europe-west1-b\"\n\n[resources.k8s_namespace.team]\nfor_each = \"${clusters}\"\ncluster = \"${each.key}\"\nname = \"team\"\n";
    let one = "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.k8s_namespace.team]\nfor_each = \"${clusters}\"\ncluster = \"${each.key}\"\nname = \"team\"\n";
    c.write(both);
    c.apply().await;
    let state_path = c.dir.path().join("main.state.json");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["clusters"]["cluster-2"]["location"], "europe-west1-b", "{state}");

    // Left, still there: its namespace is deleted.
    c.write(one);
    let (rc, t) = c.plan().await;
    assert!(rc == 2 && t.contains("- k8s_namespace.team[\"cluster-2\"]"), "{t}");
    c.apply().await;
    assert!(!c.exists(1, &["ns", "team"]).await, "deleted from the cluster that left");
    c.assert_no_changes().await;
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert!(state["clusters"].get("cluster-2").is_none(), "nothing lives there any more: {state}");

    // Back in, then gone (its recorded location no longer finds it): forgotten, in the plan.
    c.write(both);
    c.apply().await;
    c.write(one);
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["clusters"]["cluster-2"]["location"] = "europe-west9-z".into();
    std::fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 2, "{t}");
    assert!(
        t.contains(". k8s_namespace.team[\"cluster-2\"]  (forget: removed from state: cluster gone (`cluster-2`)"),
        "{t}"
    );
    assert!(t.contains("0 to destroy, 1 to forget"), "{t}");
    c.apply().await;
    assert!(c.exists(1, &["ns", "team"]).await, "forgotten, not deleted (the simulator's cluster is still there)");
    // A lookup failing otherwise (the cluster's project refused) is an error that changes nothing.
    c.write(both);
    c.apply().await;
    c.write(one);
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["clusters"]["cluster-2"]["project"] = "not-ours".into();
    std::fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    let before = std::fs::read_to_string(&state_path).unwrap();
    let (rc, t) = c.plan().await;
    assert_eq!(rc, 1, "{t}");
    assert!(
        t.contains("cluster `cluster-2` left [clusters]") && t.contains("not-ours") && t.contains("state rm"),
        "{t}"
    );
    assert_eq!(std::fs::read_to_string(&state_path).unwrap(), before, "nothing changed");
    let o = c.mf(&["state", "rm", "main.toml", "k8s_namespace.team[\"cluster-2\"]"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.assert_no_changes().await;
}
