//! The controllers the simulator plays, judged with the real kubectl and gcloud: the Istio
//! operator (only an available operator of an IstioOperator's revision reconciles it; gateways
//! move to the revision that declared them last; a deleted IstioOperator takes its revision's
//! objects, and waits on its finalizer without an operator), and GKE's service, NEG and Multi
//! Cluster Ingress controllers.
//!
//! Needs kubectl and gcloud on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use common::{Env, Out};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

/// A world whose clusters run no control plane.
fn bare() -> SimOptions {
    let mut w = World::default();
    for c in &mut w.clusters {
        c.istio_revision.clear();
    }
    SimOptions { world: w, ..SimOptions::default() }
}

/// kubectl apply -f - of `yaml` on cluster `i`.
async fn apply(e: &Env, i: usize, yaml: &str) {
    let path = e.dir.path().join("apply.yaml");
    std::fs::write(&path, yaml).unwrap();
    let o = e.kubectl(i, &["apply", "-f", path.to_str().unwrap()]).await;
    assert_eq!(o.code, 0, "kubectl apply: {}{}", o.stdout, o.stderr);
}

async fn get(e: &Env, i: usize, args: &[&str]) -> String {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    let o: Out = e.kubectl(i, &a).await;
    assert_eq!(o.code, 0, "kubectl get {args:?}: {}", o.stderr);
    o.stdout
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)).unwrap()
}

/// The operator Deployment of `rev`, as `istioctl operator init --revision` makes it.
fn operator(rev: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: istio-operator-{rev}\n  namespace: istio-operator\nspec:\n  selector:\n    matchLabels:\n      name: istio-operator\n  template:\n    metadata:\n      labels:\n        name: istio-operator\n    spec:\n      containers:\n      - name: istio-operator\n        image: docker.io/istio/operator:1.14.1\n        env:\n        - name: WATCH_NAMESPACE\n          value: istio-system\n        - name: REVISION\n          value: \"{rev}\"\n"
    )
}

fn iop(name: &str, rev: &str, profile: &str, gateway: bool) -> String {
    let gw = if gateway {
        "  components:\n    ingressGateways:\n    - name: istio-ingressgateway\n      enabled: true\n"
    } else {
        ""
    };
    format!(
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata:\n  name: {name}\n  namespace: istio-system\nspec:\n  profile: {profile}\n  revision: \"{rev}\"\n{gw}"
    )
}

async fn iop_status(e: &Env, name: &str) -> String {
    get(e, 0, &["istiooperator", name, "-n", "istio-system", "-o", "jsonpath={.status.status}"]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_istio_operator_reconciles_its_revision_only() {
    let e = Env::start(bare()).await;
    let refused = e.kubectl(0, &["get", "istiooperators", "-A"]).await;
    assert_ne!(refused.code, 0, "no IstioOperator kind before its CRD: {}", refused.stdout);
    assert_ne!(e.kubectl(0, &["get", "gateways.networking.istio.io", "-A"]).await.code, 0, "no Istio CRDs yet");
    apply(&e, 0, &repo_file("plans/manifests/istio-operator-crd.yaml")).await;
    apply(&e, 0, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-operator\n").await;
    apply(&e, 0, &iop("cp-1-14-1", "1-14-1", "default", false)).await;
    // No operator, then one of another revision: nothing happens, however often it is read.
    for _ in 0..3 {
        assert_eq!(iop_status(&e, "cp-1-14-1").await, "");
    }
    apply(&e, 0, &operator("1-15-0")).await;
    for _ in 0..3 {
        assert_eq!(iop_status(&e, "cp-1-14-1").await, "", "the 1-15-0 operator leaves 1-14-1 alone");
    }
    // Its own operator: RECONCILING for a read, then HEALTHY with istiod and the gateway made.
    apply(&e, 0, &operator("1-14-1")).await;
    assert_eq!(iop_status(&e, "cp-1-14-1").await, "RECONCILING");
    let mut reads = 1;
    while iop_status(&e, "cp-1-14-1").await == "RECONCILING" {
        reads += 1;
        assert!(reads < 10, "reconciled after a few reads");
    }
    assert_eq!(iop_status(&e, "cp-1-14-1").await, "HEALTHY");
    let table = get(&e, 0, &["istiooperators", "-n", "istio-system"]).await;
    assert!(table.starts_with("NAME") && table.contains("1-14-1") && table.contains("HEALTHY"), "{table}");
    assert_eq!(table.lines().next().unwrap().matches("AGE").count(), 1, "one Age column: {table}");
    let istiod =
        get(&e, 0, &["deploy", "istiod-1-14-1", "-n", "istio-system", "-o", "jsonpath={.metadata.labels}"]).await;
    for l in [
        r#""istio.io/rev":"1-14-1""#,
        r#""install.operator.istio.io/owning-resource":"cp-1-14-1""#,
        r#""operator.istio.io/component":"Pilot""#,
    ] {
        assert!(istiod.contains(l), "{istiod}");
    }
    let pods = get(&e, 0, &["pods", "-n", "istio-system", "-l", "app=istiod", "-o", "name"]).await;
    assert_eq!(pods.lines().count(), 1, "istiod runs: {pods}");
    assert!(e.kubectl(0, &["get", "gateways.networking.istio.io", "-A"]).await.code == 0, "Base brought Istio's CRDs");
    let svc = get(&e, 0, &["svc", "istio-ingressgateway", "-n", "istio-system"]).await;
    assert!(svc.contains("LoadBalancer") && svc.contains("34."), "an external address: {svc}");
    let finalizers =
        get(&e, 0, &["iop", "cp-1-14-1", "-n", "istio-system", "-o", "jsonpath={.metadata.finalizers}"]).await;
    assert!(finalizers.contains("istio-finalizer.install.istio.io"), "{finalizers}");

    takeover_prune_and_finalizer(&e).await;
}

/// A 1-15-0 control plane that also declares the ingress gateway takes it over; deleting 1-14-1
/// prunes only what is still its own; without its operator an IstioOperator waits on its
/// finalizer.
async fn takeover_prune_and_finalizer(e: &Env) {
    // A 1-15-0 control plane that also declares the ingress gateway takes it over.
    apply(e, 0, &iop("cp-1-15-0", "1-15-0", "default", true)).await;
    for read in 0.. {
        if iop_status(e, "cp-1-15-0").await == "HEALTHY" {
            break;
        }
        assert!(read < 10, "cp-1-15-0 reconciled after a few reads");
    }
    let rev = get(
        e,
        0,
        &["deploy", "istio-ingressgateway", "-n", "istio-system", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"],
    )
    .await;
    assert_eq!(rev, "1-15-0");
    // Deleting 1-14-1 prunes its istiod, not the gateway 1-15-0 now owns.
    let o = e.kubectl(0, &["delete", "iop", "cp-1-14-1", "-n", "istio-system"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let left = get(e, 0, &["deploy", "-n", "istio-system", "-o", "name"]).await;
    assert!(
        !left.contains("istiod-1-14-1") && left.contains("istiod-1-15-0") && left.contains("istio-ingressgateway"),
        "{left}"
    );
    // Without its operator an IstioOperator stays Terminating, held by the finalizer.
    e.kubectl(0, &["delete", "deploy", "istio-operator-1-15-0", "-n", "istio-operator"]).await;
    let o = e.kubectl(0, &["delete", "iop", "cp-1-15-0", "-n", "istio-system", "--wait=false"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let stuck =
        get(e, 0, &["iop", "cp-1-15-0", "-n", "istio-system", "-o", "jsonpath={.metadata.deletionTimestamp}"]).await;
    assert!(!stuck.is_empty(), "marked for deletion, still there");
    assert!(
        get(e, 0, &["deploy", "-n", "istio-system", "-o", "name"]).await.contains("istiod-1-15-0"),
        "nothing pruned"
    );
    let o = e
        .kubectl(
            0,
            &[
                "patch",
                "iop",
                "cp-1-15-0",
                "-n",
                "istio-system",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":[]}}"#,
            ],
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_ne!(
        e.kubectl(0, &["get", "iop", "cp-1-15-0", "-n", "istio-system"]).await.code,
        0,
        "gone with its finalizer"
    );
}

/// A LoadBalancer Service of namespace web with these annotation lines.
fn lb(name: &str, notes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\n  annotations:\n{notes}spec:\n  type: LoadBalancer\n  selector:\n    app: web\n  ports:\n  - name: https\n    port: 443\n    targetPort: 8443\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn gke_serves_load_balancers_negs_and_multi_cluster_ingress() {
    let e = Env::start(bare()).await;
    apply(&e, 0, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n").await;
    apply(&e, 0, &lb("internal", "    networking.gke.io/load-balancer-type: Internal\n")).await;
    apply(&e, 0, &lb("external", "    team: web\n")).await;
    async fn ip(e: &Env, name: &str) -> String {
        get(e, 0, &["svc", name, "-n", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).await
    }
    let subnet = Env::json(
        e.gcloud(&[
            "compute",
            "networks",
            "subnets",
            "describe",
            "default",
            "--region",
            "us-central1",
            "--format=json",
        ])
        .await
        .ok(),
    );
    let range = subnet["ipCidrRange"].as_str().unwrap();
    let prefix: String = range.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(ip(&e, "internal").await.starts_with(&format!("{prefix}.")), "internal: from {range}");
    assert!(ip(&e, "external").await.starts_with("34."), "external");

    negs(&e).await;
    multi_cluster_ingress(&e).await;
}

/// exposed_ports with a custom name: GKE's NEG controller makes the NEG, described as its own;
/// one of that name it did not make is left alone; the annotation removed, its NEG goes.
async fn negs(e: &Env) {
    // exposed_ports with a custom name: GKE's NEG controller makes the NEG, described as its own.
    let neg = |name: &str| {
        format!("    cloud.google.com/neg: '{{\"exposed_ports\": {{\"443\": {{\"name\": \"{name}\"}}}}}}'\n")
    };
    apply(e, 0, &lb("gw", &neg("gw-neg"))).await;
    let negs = Env::json(e.gcloud(&["compute", "network-endpoint-groups", "list", "--format=json"]).await.ok());
    let made = negs.as_array().unwrap().iter().find(|n| n["name"] == "gw-neg").expect("the NEG is made");
    let desc: serde_json::Value = serde_json::from_str(made["description"].as_str().unwrap()).unwrap();
    assert_eq!(
        (desc["namespace"].as_str(), desc["service-name"].as_str(), desc["port"].as_str()),
        (Some("web"), Some("gw"), Some("443"))
    );
    assert!(made["zone"].as_str().unwrap().ends_with("/us-central1-a"));
    let status = get(
        e,
        0,
        &["svc", "gw", "-n", "web", "-o", "jsonpath={.metadata.annotations.cloud\\.google\\.com/neg-status}"],
    )
    .await;
    assert_eq!(status, r#"{"network_endpoint_groups":{"443":"gw-neg"},"zones":["us-central1-a"]}"#);
    // A NEG of that name someone else made (no description) is not taken over.
    e.gcloud(&[
        "compute",
        "network-endpoint-groups",
        "create",
        "taken",
        "--zone",
        "us-central1-a",
        "--network-endpoint-type",
        "GCE_VM_IP_PORT",
        "--network",
        "default",
        "--subnet",
        "default",
    ])
    .await
    .ok();
    apply(e, 0, &lb("other", &neg("taken"))).await;
    let status = get(e, 0, &["svc", "other", "-n", "web", "-o", "jsonpath={.metadata.annotations}"]).await;
    assert!(!status.contains("neg-status"), "not synced: {status}");
    let taken = Env::json(
        e.gcloud(&[
            "compute",
            "network-endpoint-groups",
            "describe",
            "taken",
            "--zone",
            "us-central1-a",
            "--format=json",
        ])
        .await
        .ok(),
    );
    assert!(taken["description"].is_null() || taken["description"] == "", "left as it was: {taken}");
    // The annotation removed: the NEG and the status go; the foreign NEG stays.
    let o = e.kubectl(0, &["annotate", "svc", "gw", "-n", "web", "cloud.google.com/neg-"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let names = e.gcloud(&["compute", "network-endpoint-groups", "list", "--format=value(name)"]).await;
    assert_eq!(names.ok().stdout.trim(), "taken");
    let notes = get(e, 0, &["svc", "gw", "-n", "web", "-o", "jsonpath={.metadata.annotations}"]).await;
    assert!(!notes.contains("neg-status"), "{notes}");
}

/// Multi Cluster Ingress: nothing without the fleet feature; with it, the VIP of the static IP
/// and the MCS derived into both members, removed with it.
async fn multi_cluster_ingress(e: &Env) {
    e.gcloud(&["compute", "addresses", "create", "mci-ip", "--global"]).await.ok();
    let addr =
        Env::json(e.gcloud(&["compute", "addresses", "describe", "mci-ip", "--global", "--format=json"]).await.ok());
    for i in 0..2 {
        apply(e, i, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n").await;
    }
    let mcs = "apiVersion: networking.gke.io/v1\nkind: MultiClusterService\nmetadata:\n  name: web\n  namespace: web\nspec:\n  template:\n    spec:\n      selector:\n        app: web\n      ports:\n      - name: https\n        protocol: TCP\n        port: 443\n        targetPort: 8443\n";
    let mci = "apiVersion: networking.gke.io/v1\nkind: MultiClusterIngress\nmetadata:\n  name: web\n  namespace: web\n  annotations:\n    networking.gke.io/static-ip: mci-ip\nspec:\n  template:\n    spec:\n      backend:\n        serviceName: web\n        servicePort: 443\n";
    apply(e, 0, mcs).await;
    apply(e, 0, mci).await;
    async fn vip(e: &Env) -> String {
        get(e, 0, &["mci", "web", "-n", "web", "-o", "jsonpath={.status.VIP}"]).await
    }
    assert_eq!(vip(e).await, "", "no fleet feature, no controller");
    for (c, zone) in [("cluster-1", "us-central1-a"), ("cluster-2", "europe-west1-b")] {
        let region = &zone[..zone.len() - 2];
        e.gcloud(&[
            "container",
            "fleet",
            "memberships",
            "register",
            c,
            "--gke-cluster",
            &format!("{zone}/{c}"),
            "--location",
            region,
        ])
        .await
        .ok();
    }
    e.gcloud(&["container", "fleet", "ingress", "enable", "--config-membership=cluster-1", "--location=us-central1"])
        .await
        .ok();
    assert_eq!(vip(e).await, addr["address"].as_str().unwrap(), "the static IP is the VIP");
    for i in 0..2 {
        let derived = get(e, i, &["svc", "-n", "web", "-o", "name"]).await;
        assert!(derived.contains("service/mci-web-svc-"), "cluster {i}: {derived}");
    }
    let o = e.kubectl(0, &["delete", "mcs", "web", "-n", "web"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    for i in 0..2 {
        let derived = get(e, i, &["svc", "-n", "web", "-o", "name"]).await;
        assert!(!derived.contains("mci-web-svc-"), "cluster {i}: {derived}");
    }
    let names = e.gcloud(&["compute", "network-endpoint-groups", "list", "--format=value(name)"]).await;
    assert_eq!(names.ok().stdout.trim(), "taken", "the derived Services' NEGs went with them");
}
