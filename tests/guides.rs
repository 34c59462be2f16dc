//! The two setup guides as plans, end to end against the simulator, for 2 and 3 clusters: apply
//! from empty state, nothing left to do, the end state as the manual steps leave it (inspected
//! with gcloud and kubectl), drift per resource family, destroy leaving what was there before.

mod common;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

fn world(n: usize) -> World {
    let mut w = World::default();
    if n == 3 {
        let mut third = w.clusters[0].clone();
        third.name = "cluster-3".into();
        third.location = "us-central1-b".into();
        third.pod_cidr = "10.8.0.0/14".into();
        w.clusters.push(third);
    }
    w
}

/// A copy of plans/ in the test directory, and a var file naming the world's clusters.
fn setup(c: &Cloud, w: &World) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let dest = c.dir.path().join("plans");
    std::fs::create_dir_all(dest.join("manifests")).unwrap();
    for f in ["asm-multicluster.toml", "mci-istio.toml", "manifests/helloworld.yaml", "manifests/sleep.yaml"] {
        std::fs::copy(root.join(f), dest.join(f)).unwrap();
    }
    let map: Vec<String> = w.clusters.iter().map(|c| format!("\"{}\" = \"{}\"", c.name, c.location)).collect();
    std::fs::write(c.dir.path().join("clusters.toml"), format!("clusters = {{ {} }}\n", map.join(", "))).unwrap();
}

async fn mf(c: &Cloud, args: &[&str]) -> (i32, String) {
    let mut a = args.to_vec();
    if matches!(args[0], "apply" | "plan" | "drift" | "destroy") {
        a.extend(["--var-file", "clusters.toml"]);
    }
    let o = c.mf(&a).await;
    (code(&o), text(&o))
}

async fn kubectl_out(c: &Cloud, i: usize, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.kubectl(i, args).await.stdout).into_owned()
}

async fn asm_guide(n: usize) {
    let w = world(n);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    setup(&c, &w);
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), n * (n - 1), "{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "second plan not empty:\n{t}");

    // The firewall rule of the guide.
    let fw = c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    assert_eq!(fw["priority"], 900);
    assert_eq!(fw["sourceRanges"].as_array().unwrap().len(), n);
    assert_eq!(fw["targetTags"].as_array().unwrap().len(), n);
    let pods: Vec<&str> = w.clusters.iter().map(|c| c.pod_cidr.as_str()).collect();
    for (i, cl) in w.clusters.iter().enumerate() {
        // Authorized networks: every pod CIDR plus what was there; global access (two regions).
        let d = c.describe(&["container", "clusters", "describe", &cl.name, "--zone", &cl.location]).await;
        let blocks: Vec<&str> = d["masterAuthorizedNetworksConfig"]["cidrBlocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["cidrBlock"].as_str().unwrap())
            .collect();
        for p in pods.iter().chain(["203.0.113.0/24"].iter()) {
            assert!(blocks.contains(p), "{} lacks {p}: {blocks:?}", cl.name);
        }
        assert_eq!(d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"], true);
        // Remote secrets of every other cluster; the sample namespace; HelloWorld round-robin.
        let secrets = kubectl_out(
            &c,
            i,
            &["get", "secrets", "-n", "istio-system", "-l", "istio/multiCluster=true", "-o", "name"],
        )
        .await;
        assert_eq!(secrets.lines().count(), n - 1, "{secrets}");
        let labels = kubectl_out(&c, i, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels}"]).await;
        assert!(labels.contains("\"istio.io/rev\":\"asm-173-3\"") && !labels.contains("istio-injection"), "{labels}");
        let deploys = kubectl_out(&c, i, &["get", "deploy", "-n", "sample", "-o", "name"]).await;
        let want = if i % 2 == 0 { "helloworld-v1" } else { "helloworld-v2" };
        assert!(deploys.contains(want) && deploys.contains("deployment.apps/sleep"), "{}: {deploys}", cl.name);
    }
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 0, "{t}");

    // Out-of-band changes, one per family: each reported by drift, each repaired by apply.
    let c1 = &w.clusters[0];
    let changes: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "gcloud",
            vec!["compute", "firewall-rules", "update", "istio-multicluster-pods", "--priority=1000"],
            "gcp_firewall.istio_multicluster_pods",
        ),
        (
            "gcloud",
            vec![
                "container",
                "clusters",
                "update",
                &c1.name,
                "--zone",
                &c1.location,
                "--enable-master-authorized-networks",
                "--master-authorized-networks",
                "203.0.113.0/24",
            ],
            "gke_control_plane_access.mesh",
        ),
        (
            "kubectl",
            vec!["delete", "secret", "istio-remote-secret-cluster-2", "-n", "istio-system"],
            "mesh_remote_secret.crosswise",
        ),
        ("kubectl", vec!["label", "ns", "sample", "istio.io/rev=other", "--overwrite"], "k8s_namespace.sample"),
        (
            "kubectl",
            vec!["patch", "deploy", "sleep", "-n", "sample", "--type", "merge", "-p", r#"{"spec":{"replicas":3}}"#],
            "k8s_manifest.sleep",
        ),
    ];
    for (tool, args, addr) in changes {
        if tool == "gcloud" {
            c.gcloud(&args).await;
        } else {
            c.kubectl(0, &args).await;
        }
        let (rc, t) = mf(&c, &["drift", plan]).await;
        assert_eq!(rc, 2, "{tool} {args:?} not reported:\n{t}");
        assert!(t.contains(addr), "{addr} not named:\n{t}");
        let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
        assert_eq!(rc, 0, "{t}");
        let (rc, t) = mf(&c, &["drift", plan]).await;
        assert_eq!(rc, 0, "after repairing {addr}:\n{t}");
    }

    // The guide's clean-up step, then everything: nothing that was there before goes.
    let (rc, t) = mf(&c, &["destroy", plan, "--auto-approve", "--target", "k8s_namespace.sample"]).await;
    assert_eq!(rc, 0, "{t}");
    let o = c
        .run(
            "kubectl",
            &["--context", &format!("gke_meshform-demo_{}_{}", c1.location, c1.name), "get", "ns", "sample"],
            &[],
            &[],
        )
        .await;
    assert_ne!(code(&o), 0, "sample is gone");
    let (rc, t) = mf(&c, &["destroy", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    for (i, cl) in w.clusters.iter().enumerate() {
        let d = c.describe(&["container", "clusters", "describe", &cl.name, "--zone", &cl.location]).await;
        let blocks: Vec<&str> = d["masterAuthorizedNetworksConfig"]["cidrBlocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["cidrBlock"].as_str().unwrap())
            .collect();
        assert_eq!(blocks, ["203.0.113.0/24"], "authorized networks restored");
        assert_eq!(d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"], false);
        let pods = kubectl_out(&c, i, &["get", "pods", "-n", "istio-system", "-l", "app=istiod", "-o", "name"]).await;
        assert_eq!(pods.lines().count(), 2, "pre-seeded istiod pods survive");
        let sa = kubectl_out(&c, i, &["get", "sa", "istio-reader-service-account", "-n", "istio-system", "-o", "name"])
            .await;
        assert!(sa.contains("istio-reader-service-account"));
        let secrets = kubectl_out(&c, i, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
        assert!(!secrets.contains("istio-remote-secret") && !secrets.contains("remote-secret-token"), "{secrets}");
    }
    let rules =
        String::from_utf8_lossy(&c.gcloud(&["compute", "firewall-rules", "list", "--format=value(name)"]).await.stdout)
            .to_string();
    assert!(!rules.contains("istio-multicluster-pods"), "{rules}");
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_guide_for_two_clusters() {
    asm_guide(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_guide_for_three_clusters() {
    asm_guide(3).await;
}

async fn mci_guide(n: usize) {
    let w = world(n);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    setup(&c, &w);
    let plan = "plans/mci-istio.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert!(!t.contains("replace me"), "the TLS key is sensitive");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "second plan not empty:\n{t}");

    let addr = c.describe(&["compute", "addresses", "describe", "mci-ingress-ip", "--global"]).await;
    let members = c.describe(&["container", "fleet", "memberships", "list"]).await;
    assert_eq!(members.as_array().unwrap().len(), n);
    let feature = c.describe(&["container", "fleet", "ingress", "describe"]).await;
    assert_eq!(
        feature["spec"]["multiclusteringress"]["configMembership"],
        "projects/meshform-demo/locations/us-central1/memberships/cluster-1"
    );
    assert_eq!(feature["state"]["state"]["code"], "OK");
    let negs = String::from_utf8_lossy(
        &c.gcloud(&["compute", "network-endpoint-groups", "list", "--format=value(name)"]).await.stdout,
    )
    .to_string();
    assert!(
        negs.contains("istio-ingressgateway-us-central1") && negs.contains("istio-ingressgateway-europe-west1"),
        "{negs}"
    );
    for i in 0..n {
        let net = kubectl_out(
            &c,
            i,
            &["get", "ns", "istio-system", "-o", "jsonpath={.metadata.labels.topology\\.istio\\.io/network}"],
        )
        .await;
        assert_eq!(net, format!("network-{}", w.clusters[i].name));
        let cacerts =
            kubectl_out(&c, i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data}"]).await;
        for k in ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"] {
            assert!(cacerts.contains(k), "{cacerts}");
        }
        let iop = kubectl_out(&c, i, &["get", "istiooperators", "-n", "istio-system", "-o", "name"]).await;
        assert_eq!(iop.lines().count(), 2, "{iop}");
        let gw = kubectl_out(
            &c,
            i,
            &[
                "get",
                "gateway",
                "cross-network-gateway",
                "-n",
                "istio-system",
                "-o",
                "jsonpath={.spec.servers[0].port.number}",
            ],
        )
        .await;
        assert_eq!(gw, "15443");
        let bc = kubectl_out(&c, i, &["get", "backendconfigs", "-n", "istio-system", "-o", "name"]).await;
        assert!(bc.contains("ingress-backendconfig"));
        let remote = kubectl_out(
            &c,
            i,
            &["get", "secrets", "-n", "istio-system", "-l", "istio/multiCluster=true", "-o", "name"],
        )
        .await;
        assert_eq!(remote.lines().count(), n - 1);
    }
    let mci = kubectl_out(&c, 0, &["get", "mci", "istio-ingress", "-n", "istio-system", "-o", "json"]).await;
    let mci: serde_json::Value = serde_json::from_str(&mci).unwrap();
    assert_eq!(mci["metadata"]["annotations"]["networking.gke.io/static-ip"], addr["selfLink"]);
    assert_eq!(mci["metadata"]["annotations"]["networking.gke.io/frontend-config"], "http-redirect");
    assert_eq!(mci["spec"]["template"]["spec"]["tls"][0]["secretName"], "istio-ingress-tls");
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &["destroy", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    let members = String::from_utf8_lossy(
        &c.gcloud(&["container", "fleet", "memberships", "list", "--format=value(name)"]).await.stdout,
    )
    .to_string();
    assert_eq!(members.trim(), "");
    let ns = kubectl_out(&c, 0, &["get", "ns", "istio-system", "-o", "name"]).await;
    assert!(ns.contains("istio-system"), "istio-system existed before; it stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn mci_guide_for_two_clusters() {
    mci_guide(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mci_guide_for_three_clusters() {
    mci_guide(3).await;
}

#[test]
fn the_demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_meshform"))
        .arg("demo")
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{t}");
    assert!(t.contains("priority = 900 -> 1000") && t.contains("Demo complete"), "{t}");
}
