//! The two setup guides as plans, end to end against the simulator, for 2 and 3 clusters: apply
//! from empty state, nothing left to do, the end state as the manual steps leave it (inspected
//! with gcloud and kubectl), drift per resource family, destroy leaving what was there before.
//!
//! Needs gcloud and kubectl on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use common::{Cloud, authorized_networks, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

/// The default world (2 private zonal clusters), or testdata/worlds/three-clusters.toml (those
/// plus a public regional cluster in a third region).
fn world(n: usize) -> World {
    match n {
        2 => World::default(),
        3 => {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/worlds/three-clusters.toml");
            World::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
        }
        _ => unreachable!("worlds of 2 and 3 clusters"),
    }
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

/// A cluster as gcloud describes it.
async fn cluster(c: &Cloud, name: &str, location: &str) -> serde_json::Value {
    c.describe(&["container", "clusters", "describe", name, "--location", location]).await
}

async fn asm_guide(n: usize) {
    let w = world(n);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), n * (n - 1), "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), n, "{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "second plan not empty:\n{t}");

    // The firewall rule of the guide: its pod CIDRs and node tags found as the guide finds them.
    let fw = c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    assert_eq!((&fw["direction"], &fw["priority"], &fw["disabled"]), (&"INGRESS".into(), &900.into(), &false.into()));
    let mut protocols: Vec<&str> =
        fw["allowed"].as_array().unwrap().iter().map(|a| a["IPProtocol"].as_str().unwrap()).collect();
    protocols.sort();
    assert_eq!(protocols, ["ah", "esp", "icmp", "sctp", "tcp", "udp"]);
    let mut pods: Vec<String> = w.clusters.iter().map(|c| c.pod_cidr.clone()).collect();
    pods.sort();
    let mut tags = Vec::new();
    for cl in &w.clusters {
        let filter = format!("--filter=name~gke-{}-.*", cl.name);
        let o = c.gcloud(&["compute", "instances", "list", &filter, "--format=value(tags.items.[0])"]).await;
        tags.push(String::from_utf8_lossy(&o.stdout).lines().next().unwrap().to_string());
    }
    tags.sort();
    let list = |k: &str| {
        let mut v: Vec<String> = fw[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    // The pod ranges merged into the fewest blocks with exactly the same addresses.
    let merged = |ranges: &[String]| {
        let mut m = meshform_engine::cidr::merge_text(ranges.iter().map(String::as_str)).unwrap();
        m.sort();
        m
    };
    assert_eq!((list("sourceRanges"), list("targetTags")), (merged(&pods), tags));
    for (i, cl) in w.clusters.iter().enumerate() {
        // Private clusters: the other clusters' pod ranges (merged) plus what was there, and
        // global access (several regions). A public cluster is left as it was.
        let d = cluster(&c, &cl.name, &cl.location).await;
        let global = &d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"];
        if cl.private {
            let others: Vec<String> = pods.iter().filter(|p| **p != cl.pod_cidr).cloned().collect();
            let mut want = merged(&others);
            want.push("203.0.113.0/24".into());
            want.sort();
            assert_eq!(authorized_networks(&d), want, "{}", cl.name);
            assert_eq!(*global, true, "{}", cl.name);
        } else {
            assert_eq!(authorized_networks(&d), Vec::<String>::new(), "{}", cl.name);
            assert_eq!(*global, false, "{}", cl.name);
        }
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
        let (want, not) =
            if i % 2 == 0 { ("helloworld-v1", "helloworld-v2") } else { ("helloworld-v2", "helloworld-v1") };
        assert!(deploys.contains(want) && !deploys.contains(not), "{}: {deploys}", cl.name);
        assert!(deploys.contains("deployment.apps/sleep"), "{}: {deploys}", cl.name);
        let port =
            kubectl_out(&c, i, &["get", "svc", "helloworld", "-n", "sample", "-o", "jsonpath={.spec.ports[0].port}"])
                .await;
        assert_eq!(port, "5000", "the HelloWorld Service in {}", cl.name);
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
    for i in 0..n {
        assert!(!c.exists(i, &["ns", "sample"]).await, "sample is gone from cluster {i}");
        if i > 0 {
            let remote = ["secret", "-n", "istio-system", "istio-remote-secret-cluster-1"];
            assert!(c.exists(i, &remote).await, "the remote secrets stay in cluster {i}");
        }
    }
    c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    let (rc, t) = mf(&c, &["destroy", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    for (i, cl) in w.clusters.iter().enumerate() {
        let d = cluster(&c, &cl.name, &cl.location).await;
        assert_eq!(
            serde_json::Value::Array(
                d["masterAuthorizedNetworksConfig"]["cidrBlocks"].as_array().cloned().unwrap_or_default()
            ),
            serde_json::json!(
                cl.authorized_networks
                    .iter()
                    .map(|b| serde_json::json!({"cidrBlock": b, "displayName": "existing"}))
                    .collect::<Vec<_>>()
            ),
            "authorized networks of {} restored, display names included",
            cl.name
        );
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

/// The ASM guide with the managed Cloud Service Mesh (`managed_mesh = true`) on 3 clusters that
/// have no control plane installed: the fleet's servicemesh feature and one membership feature
/// per cluster, apply waiting until each control plane is ACTIVE; the sample namespace gets the
/// live revision; a control plane that stalls later is drift, and apply then fails with Google's
/// details; destroy takes the managed control plane away and leaves no membership.
#[tokio::test(flavor = "multi_thread")]
async fn managed_mesh_on_three_clusters_reaches_active() {
    let mut w = world(3);
    for cl in &mut w.clusters {
        cl.istio_revision.clear();
    }
    let n = w.clusters.len();
    let c = Cloud::start(SimOptions { world: w.clone(), controller_polls: 3, ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/asm-multicluster.toml";
    let managed = ["--var", "managed_mesh=true"];
    let with = |cmd: &'static str, extra: &[&'static str]| {
        let mut a = vec![cmd, plan];
        a.extend_from_slice(&managed);
        a.extend_from_slice(extra);
        a
    };
    let (rc, t) = mf(&c, &with("plan", &[])).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("+ gke_fleet_membership_feature.mesh[").count(), n, "{t}");
    assert!(t.contains("+ gke_fleet_feature.servicemesh[\"servicemesh\"]"), "{t}");
    let (rc, t) = mf(&c, &with("apply", &["--auto-approve"])).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), n * (n - 1), "{t}");
    let (rc, t) = mf(&c, &with("plan", &["--detailed-exitcode"])).await;
    assert_eq!(rc, 0, "second plan not empty:\n{t}");

    let f = c.describe(&["container", "fleet", "mesh", "describe"]).await;
    for (i, cl) in w.clusters.iter().enumerate() {
        let region = meshform_sim::world::region_of(&cl.location);
        let key = format!("projects/{}/locations/{region}/memberships/{}", w.project_number, cl.name);
        let cp = &f["membershipStates"][&key]["servicemesh"]["controlPlaneManagement"];
        assert_eq!(cp["state"], "ACTIVE", "{key}: {f}");
        let labels = kubectl_out(&c, i, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels}"]).await;
        assert!(labels.contains("\"istio.io/rev\":\"asm-managed\""), "{}: {labels}", cl.name);
        let cpr = kubectl_out(&c, i, &["get", "controlplanerevisions", "-n", "istio-system", "-o", "name"]).await;
        assert!(cpr.contains("asm-managed"), "{}: {cpr}", cl.name);
    }
    let (rc, t) = mf(&c, &with("drift", &[])).await;
    assert_eq!(rc, 0, "{t}");

    // cluster-2's control plane stalls: drift names it, apply fails with Google's details.
    let stalled = w.clusters[1].name.clone();
    c.sim.shared.store.lock().unwrap().mesh_stalls.insert(
        stalled.clone(),
        serde_json::json!({"state": "STALLED", "details": [{"code": "MESH_IAM_PERMISSION_DENIED", "details": "the mesh service agent lacks roles/anthosservicemesh.serviceAgent"}]}),
    );
    let (rc, t) = mf(&c, &with("drift", &[])).await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains(&format!("gke_fleet_membership_feature.mesh[\"{stalled}\"]")) && t.contains("STALLED"), "{t}");
    let (rc, t) = mf(&c, &with("apply", &["--auto-approve"])).await;
    assert_eq!(rc, 1, "{t}");
    assert!(t.contains("is STALLED: MESH_IAM_PERMISSION_DENIED: the mesh service agent lacks"), "{t}");
    c.sim.shared.store.lock().unwrap().mesh_stalls.clear();
    let (rc, t) = mf(&c, &with("apply", &["--auto-approve"])).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &with("drift", &[])).await;
    assert_eq!(rc, 0, "{t}");

    let (rc, t) = mf(&c, &with("destroy", &["--auto-approve"])).await;
    assert_eq!(rc, 0, "{t}");
    for i in 0..n {
        let cpr = ["controlplanerevision", "asm-managed", "-n", "istio-system"];
        assert!(!c.exists(i, &cpr).await, "the managed control plane is gone from cluster {i}");
    }
    let members = c.gcloud(&["container", "fleet", "memberships", "list", "--format=value(name)"]).await;
    assert_eq!(String::from_utf8_lossy(&members.stdout).trim(), "", "no membership is left");
}

/// The discovery check fails, naming the pair, when a remote secret is deleted or points at the
/// wrong server; apply repairs both.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_discovery_fails_naming_the_pair_and_apply_repairs_it() {
    let w = world(2);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    let found = |t: &str| t.lines().filter(|l| l.contains("endpoint discovery")).collect::<Vec<_>>().join("\n");
    assert_eq!(t.matches("ok   endpoint discovery").count(), 2, "{t}");
    // cluster-1's istiod loses cluster-2's credentials.
    c.kubectl(0, &["delete", "secret", "istio-remote-secret-cluster-2", "-n", "istio-system"]).await;
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(
        found(&t).contains(
            "`cluster-1` → `cluster-2`: istio-system/istio-remote-secret-cluster-2 is missing in cluster `cluster-1`"
        ) && found(&t).contains("missing: v2"),
        "{t}"
    );
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    // Now its kubeconfig names a loopback port where nothing listens.
    let kc = String::from_utf8(
        c.kubectl(
            1,
            &[
                "get",
                "secret",
                "istio-remote-secret-cluster-1",
                "-n",
                "istio-system",
                "-o",
                "jsonpath={.data.cluster-1}",
            ],
        )
        .await
        .stdout,
    )
    .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kc = String::from_utf8(b64.decode(kc.trim()).unwrap()).unwrap();
    let server = kc.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let wrong = b64.encode(kc.replace(&server, "https://127.0.0.1:9").as_bytes());
    let patch = format!(r#"{{"data":{{"cluster-1":"{wrong}"}}}}"#);
    c.kubectl(
        1,
        &["patch", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "--type", "merge", "-p", &patch],
    )
    .await;
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(
        found(&t)
            .contains("`cluster-2` → `cluster-1`: the remote secret's kubeconfig cannot list helloworld's endpoints"),
        "{t}"
    );
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), 2, "{t}");
}

/// The ingress's TLS key comes from Secret Manager (the data source, no variable): it reaches the
/// cluster's Secret, and is in no plan (of any format), log or state in plaintext.
async fn tls_key_stays_secret(c: &Cloud, w: &World, plan: &str, apply_log: &str) {
    let key = w.secrets.iter().find(|s| s.name == "ingress-tls-key").and_then(|s| s.data.clone()).unwrap();
    let judged = c.gcloud(&["secrets", "versions", "access", "latest", "--secret", "ingress-tls-key"]).await;
    assert_eq!(String::from_utf8_lossy(&judged.stdout), key, "gcloud reads the seeded key");
    let b64 = kubectl_out(
        c,
        0,
        &["get", "secret", "istio-ingress-tls", "-n", "istio-system", "-o", "jsonpath={.data.tls\\.key}"],
    )
    .await;
    use base64::Engine as _;
    let got = base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), key, "the key reached the cluster's Secret");
    let body = "simulated ingress key";
    assert!(key.contains(body));
    assert!(apply_log.contains("data") && apply_log.contains("(sensitive)"), "{apply_log}");
    assert!(!apply_log.contains(body), "the apply's log holds the key");
    let mut seen =
        vec![("state".to_string(), std::fs::read_to_string(c.dir.path().join("plans/mci-istio.state.json")).unwrap())];
    for f in ["human", "json", "markdown"] {
        let (rc, t) = mf(c, &["plan", plan, "--destroy", "--format", f]).await;
        assert_eq!(rc, 0, "{t}");
        seen.push((format!("destroy plan, {f}"), t));
        let (rc, t) = mf(c, &["show", "again.plan", "--format", f]).await;
        assert_eq!(rc, 0, "{t}");
        seen.push((format!("show of a saved plan, {f}"), t));
    }
    let (rc, t) = mf(c, &["plan", plan, "--json"]).await;
    assert_eq!(rc, 0, "{t}");
    seen.push(("plan --json".into(), t));
    seen.push((
        "saved plan".into(),
        String::from_utf8_lossy(&std::fs::read(c.dir.path().join("again.plan")).unwrap()).into(),
    ));
    for (what, text) in seen {
        assert!(!text.contains(body), "the {what} holds the key in plaintext");
    }
}

/// The world of `n` clusters with no control plane installed: the plan installs Istio.
fn bare_world(n: usize) -> World {
    let mut w = world(n);
    for cl in &mut w.clusters {
        cl.istio_revision.clear();
    }
    w
}

/// A kubectl `-o json` read, parsed.
async fn kubectl_json(c: &Cloud, i: usize, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_out(c, i, &a).await).unwrap()
}

/// The mci-istio guide on `n` clusters with no mesh: the operator of revision 1-14-1, its
/// IstioOperators HEALTHY (control plane, ingress and east-west gateways), the NEG made by GKE's
/// controller from the gateway's annotation (not by the plan), the MultiClusterIngress with the
/// static IP as its VIP and its derived Services in every member, HelloWorld discovered across
/// the mesh; then drift clean and destroy leaving nothing of it.
async fn mci_guide(n: usize) {
    let w = bare_world(n);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/mci-istio.toml";
    let (rc, t) = mf(&c, &["plan", plan, "--verbose"]).await;
    assert_eq!(rc, 0, "{t}");
    for gate in [
        "IstioOperator istio-system/istio-control-plane-1-14-1: HEALTHY",
        "Service istio-system/istio-ingressgateway: NEGs synced",
        "MultiClusterIngress istio-system/istio-ingress: VIP assigned",
        "Deployment istio-operator/istio-operator-1-14-1: Available",
    ] {
        assert!(t.contains(gate), "the plan shows the wait `{gate}`:\n{t}");
    }
    assert!(!t.contains("gcp_network_endpoint_group"), "the NEG is GKE's to make:\n{t}");
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), n, "{t}");
    let (rc, again) = mf(&c, &["plan", plan, "--detailed-exitcode", "--out", "again.plan"]).await;
    assert_eq!(rc, 0, "second plan not empty:\n{again}");
    tls_key_stays_secret(&c, &w, plan, &t).await;

    let addr = c.describe(&["compute", "addresses", "describe", "mci-ingress-ip", "--global"]).await;
    let members = c.describe(&["container", "fleet", "memberships", "list"]).await;
    assert_eq!(members.as_array().unwrap().len(), n);
    let feature = c.describe(&["container", "fleet", "ingress", "describe"]).await;
    assert_eq!(
        feature["spec"]["multiclusteringress"]["configMembership"],
        "projects/meshform-demo/locations/us-central1/memberships/cluster-1"
    );
    assert_eq!(feature["state"]["state"]["code"], "OK");
    for (i, cl) in w.clusters.iter().enumerate() {
        mci_cluster_is_meshed(&c, i, cl).await;
    }
    let mci = kubectl_json(&c, 0, &["mci", "istio-ingress", "-n", "istio-system"]).await;
    assert_eq!(mci["metadata"]["annotations"]["networking.gke.io/static-ip"], addr["selfLink"]);
    assert_eq!(mci["status"]["VIP"], addr["address"], "the VIP is the reserved address");
    assert_eq!(mci["metadata"]["annotations"]["networking.gke.io/frontend-config"], "http-redirect");
    assert_eq!(mci["spec"]["template"]["spec"]["tls"][0]["secretName"], "istio-ingress-tls");
    let mcs = kubectl_json(&c, 0, &["mcs", "istio-ingressgateway-mc", "-n", "istio-system"]).await;
    assert_eq!(mcs["spec"]["template"]["spec"]["ports"][1]["port"], 443);
    assert_eq!(
        mcs["metadata"]["annotations"]["cloud.google.com/backend-config"],
        r#"{"default": "ingress-backendconfig"}"#
    );
    let redirect = kubectl_json(&c, 0, &["frontendconfig", "http-redirect", "-n", "istio-system"]).await;
    assert_eq!(redirect["spec"]["redirectToHttps"]["enabled"], true);
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 0, "{t}");

    // The intermediates rotated: each cluster's is new, the mesh's discovery check stays green.
    let intermediate = async |i: usize| {
        kubectl_out(&c, i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data.ca-cert\\.pem}"])
            .await
    };
    let mut before = Vec::new();
    for i in 0..n {
        before.push(intermediate(i).await);
    }
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", "ca_intermediate_version=2"]).await;
    assert_eq!(rc, 0, "{t}");
    assert!(t.contains("~ mesh_ca.ca: updated"), "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), n, "{t}");
    for (i, old) in before.iter().enumerate() {
        let now = intermediate(i).await;
        assert!(!now.is_empty() && &now != old, "cluster {i} has a new intermediate");
    }
    let (rc, t) = mf(&c, &["drift", plan, "--var", "ca_intermediate_version=2"]).await;
    assert_eq!(rc, 0, "{t}");

    let (rc, t) = mf(&c, &["destroy", plan, "--auto-approve", "--var", "ca_intermediate_version=2"]).await;
    assert_eq!(rc, 0, "{t}");
    mci_destroy_left_nothing(&c, n).await;
}

/// One cluster after the mci guide: Istio of revision 1-14-1 installed by its operator and
/// healthy, the gateways' Services as GKE serves them (the east-west one on an internal address
/// of the region's subnet, the ingress one with the NEG GKE's controller made, described as its
/// own), and what the guide declares besides.
async fn mci_cluster_is_meshed(c: &Cloud, i: usize, cl: &meshform_sim::world::ClusterSpec) {
    let iops = kubectl_json(c, i, &["istiooperators", "-n", "istio-system"]).await;
    let mut names: Vec<(String, String)> = iops["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["status"]["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    names.sort();
    let healthy = |n: &str| (n.to_string(), "HEALTHY".to_string());
    assert_eq!(
        names,
        vec![healthy("istio-control-plane-1-14-1"), healthy("istio-eastwestgateway"), healthy("istio-ingressgateway")]
    );
    let iop = kubectl_json(c, i, &["istiooperators", "istio-control-plane-1-14-1", "-n", "istio-system"]).await;
    assert_eq!(iop["spec"]["values"]["global"]["network"], format!("network-{}", cl.name));
    let istiod = kubectl_json(c, i, &["deployment", "istiod-1-14-1", "-n", "istio-system"]).await;
    assert_eq!(istiod["status"]["availableReplicas"], 1);
    assert_eq!(istiod["metadata"]["labels"]["install.operator.istio.io/owning-resource"], "istio-control-plane-1-14-1");
    let ew = kubectl_json(c, i, &["service", "istio-eastwestgateway", "-n", "istio-system"]).await;
    assert_eq!(ew["metadata"]["annotations"]["networking.gke.io/load-balancer-type"], "Internal");
    let ip: std::net::Ipv4Addr = ew["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap().parse().unwrap();
    let region = meshform_sim::world::region_of(&cl.location);
    let subnet = c.describe(&["compute", "networks", "subnets", "describe", "default", "--region", &region]).await;
    let (net, len) = subnet["ipCidrRange"].as_str().unwrap().split_once('/').unwrap();
    let mask = u32::MAX << (32 - len.parse::<u32>().unwrap());
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    assert_eq!(u32::from(ip) & mask, u32::from(net), "an internal address of {region}'s subnet: {ew}");
    let gw = kubectl_json(c, i, &["service", "istio-ingressgateway", "-n", "istio-system"]).await;
    let status: serde_json::Value =
        serde_json::from_str(gw["metadata"]["annotations"]["cloud.google.com/neg-status"].as_str().unwrap()).unwrap();
    let neg_name = format!("istio-ingressgateway-{}", cl.name);
    assert_eq!(status["network_endpoint_groups"]["443"], neg_name.as_str());
    let zone = status["zones"][0].as_str().unwrap().to_string();
    let neg = c.describe(&["compute", "network-endpoint-groups", "describe", &neg_name, "--zone", &zone]).await;
    let desc: serde_json::Value = serde_json::from_str(neg["description"].as_str().unwrap()).unwrap();
    assert_eq!(
        (desc["namespace"].as_str(), desc["service-name"].as_str(), desc["port"].as_str()),
        (Some("istio-system"), Some("istio-ingressgateway"), Some("443")),
        "{neg}"
    );
    assert_eq!(neg["networkEndpointType"], "GCE_VM_IP_PORT");
    let derived = kubectl_out(c, i, &["get", "services", "-n", "istio-system", "-o", "name"]).await;
    assert!(
        derived.contains("service/mci-istio-ingressgateway-mc-svc-"),
        "the MCS is derived into every member: {derived}"
    );
    let subsets = kubectl_out(
        c,
        i,
        &["get", "destinationrule", "helloworld", "-n", "istio-system", "-o", "jsonpath={.spec.subsets[*].name}"],
    )
    .await;
    assert_eq!(subsets, "v1 v2");
    assert!(c.exists(i, &["telemetry", "mesh-default", "-n", "istio-system"]).await);
    let net = kubectl_out(
        c,
        i,
        &["get", "ns", "istio-system", "-o", "jsonpath={.metadata.labels.topology\\.istio\\.io/network}"],
    )
    .await;
    assert_eq!(net, format!("network-{}", cl.name));
    let rev = kubectl_out(c, i, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"]).await;
    assert_eq!(rev, "1-14-1");
    let cacerts =
        kubectl_out(c, i, &["get", "secret", "cacerts", "-n", "istio-system", "-o", "jsonpath={.data}"]).await;
    for k in ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"] {
        assert!(cacerts.contains(k), "{cacerts}");
    }
    let port = kubectl_out(
        c,
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
    assert_eq!(port, "15443");
    let bc = kubectl_out(c, i, &["get", "backendconfigs", "-n", "istio-system", "-o", "name"]).await;
    assert!(bc.contains("ingress-backendconfig"));
    let n = c.sim.clusters.len();
    let remote =
        kubectl_out(c, i, &["get", "secrets", "-n", "istio-system", "-l", "istio/multiCluster=true", "-o", "name"])
            .await;
    assert_eq!(remote.lines().count(), n - 1);
}

/// After the mci guide's destroy: no membership, NEG (GKE's included) or address, the
/// multiclusteringress feature off, and in every cluster nothing of the guide: no operator, no
/// IstioOperator kind, no istiod, the namespaces it made gone and istio-system unlabelled.
async fn mci_destroy_left_nothing(c: &Cloud, n: usize) {
    let listed = |args: &'static [&'static str]| async move {
        String::from_utf8_lossy(&c.gcloud(args).await.stdout).trim().to_string()
    };
    assert_eq!(listed(&["container", "fleet", "memberships", "list", "--format=value(name)"]).await, "");
    assert_eq!(listed(&["compute", "network-endpoint-groups", "list", "--format=value(name)"]).await, "");
    assert_eq!(listed(&["compute", "addresses", "list", "--format=value(name)"]).await, "");
    let feature = c.run("gcloud", &["container", "fleet", "ingress", "describe"], &[], &[]).await;
    assert_ne!(code(&feature), 0, "the multiclusteringress feature is disabled: {}", text(&feature));
    for i in 0..n {
        let labels = kubectl_out(c, i, &["get", "ns", "istio-system", "-o", "jsonpath={.metadata.labels}"]).await;
        assert!(!labels.contains("topology.istio.io/network"), "{labels}");
        assert!(!c.exists(i, &["crd", "istiooperators.install.istio.io"]).await, "the operator's CRD is gone");
        for ns in ["istio-operator", "sample"] {
            assert!(!c.exists(i, &["ns", ns]).await, "namespace {ns} is gone from cluster {i}");
        }
        let left = kubectl_out(c, i, &["get", "deployments,services", "-n", "istio-system", "-o", "name"]).await;
        assert_eq!(left.trim(), "", "nothing of Istio is left in cluster {i}");
        for obj in [
            &["secret", "cacerts"][..],
            &["gateway", "cross-network-gateway"],
            &["backendconfig", "ingress-backendconfig"],
            &["telemetry", "mesh-default"],
            &["destinationrule", "helloworld"],
            &["mci", "istio-ingress"],
            &["mcs", "istio-ingressgateway-mc"],
            &["frontendconfig", "http-redirect"],
            &["secret", "istio-ingress-tls"],
        ] {
            let mut a = obj.to_vec();
            a.extend(["-n", "istio-system"]);
            assert!(!c.exists(i, &a).await, "{obj:?} is left in cluster {i}");
        }
        let remote = kubectl_out(c, i, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
        assert!(!remote.contains("istio-remote-secret"), "{remote}");
    }
}

/// The IstioOperator health gate: with cluster-2's istiod unable to roll out, apply fails naming
/// the IstioOperator, its cluster and what it waits on, within the configured time, and nothing
/// that needs the control plane starts; once the rollout can proceed, apply converges; a control
/// plane that stops being healthy later is a finding of drift.
#[tokio::test(flavor = "multi_thread")]
async fn mci_istio_install_waits_until_healthy_and_times_out_when_stalled() {
    let w = bare_world(2);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/mci-istio.toml";
    let path = c.dir.path().join(plan);
    let text_of = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text_of}\n[providers.kubernetes]\nwait_timeout_seconds = 3\n")).unwrap();
    c.sim.kube[1].stall_rollout("istio-system", "istiod-1-14-1", true);
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 1, "{t}");
    assert!(
        t.contains("IstioOperator istio-system/istio-control-plane-1-14-1 in cluster `cluster-2` did not become HEALTHY within 3s")
            && t.contains("waiting for Deployment istio-system/istiod-1-14-1"),
        "{t}"
    );
    for i in 0..2 {
        assert!(
            !c.exists(i, &["iop", "istio-ingressgateway", "-n", "istio-system"]).await,
            "the gateways wait for every control plane (cluster {i})"
        );
    }
    let status = kubectl_out(
        &c,
        0,
        &["get", "iop", "istio-control-plane-1-14-1", "-n", "istio-system", "-o", "jsonpath={.status.status}"],
    )
    .await;
    assert_eq!(status, "HEALTHY", "cluster-1's control plane is up");

    c.sim.kube[1].stall_rollout("istio-system", "istiod-1-14-1", false);
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 0, "{t}");

    // istiod of cluster-2 stops being available: the IstioOperator is a finding of its own.
    c.sim.kube[1].stall_rollout("istio-system", "istiod-1-14-1", true);
    let o = c.kubectl(1, &["rollout", "restart", "deployment/istiod-1-14-1", "-n", "istio-system"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains("IstioOperator istio-system/istio-control-plane-1-14-1") && t.contains("not HEALTHY"), "{t}");
}

/// A canary upgrade as Istio documents it: 1-15-0 declared beside 1-14-1 is installed and
/// health-gated before any namespace moves to it, the gateways are upgraded in place; then
/// 1-14-1 removed deletes only its control plane and operator, never the shared ingress gateway.
/// At every step each workload namespace's revision has an available istiod, and the mesh's
/// discovery check passes.
#[tokio::test(flavor = "multi_thread")]
async fn mci_canary_upgrade_keeps_a_healthy_revision_serving() {
    let n = 2;
    let w = bare_world(n);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/mci-istio.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    let uid = |v: serde_json::Value| v["metadata"]["uid"].as_str().unwrap().to_string();
    let mut gateways = Vec::new();
    for i in 0..n {
        gateways.push(uid(kubectl_json(&c, i, &["deployment", "istio-ingressgateway", "-n", "istio-system"]).await));
    }
    // The namespace's revision runs an available istiod, and the ingress gateway is the same
    // object, of the revision `rev`.
    let serving = async |rev: &str| {
        for (i, gateway) in gateways.iter().enumerate() {
            let label =
                kubectl_out(&c, i, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"]).await;
            assert_eq!(label, rev, "cluster {i}");
            let istiod = kubectl_json(&c, i, &["deployment", &format!("istiod-{rev}"), "-n", "istio-system"]).await;
            assert_eq!(istiod["status"]["availableReplicas"], 1, "cluster {i}");
            let gw = kubectl_json(&c, i, &["deployment", "istio-ingressgateway", "-n", "istio-system"]).await;
            assert_eq!(&uid(gw.clone()), gateway, "the ingress gateway is kept in cluster {i}");
            assert_eq!(gw["metadata"]["labels"]["istio.io/rev"], rev, "cluster {i}");
        }
    };
    serving("1-14-1").await;

    let both = r#"revisions=["1-14-1", "1-15-0"]"#;
    let (rc, t) = mf(&c, &["plan", plan, "--var", both]).await;
    assert_eq!(rc, 0, "{t}");
    assert!(!t.contains("destroyed") && !t.contains("replaced"), "nothing goes during the canary:\n{t}");
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", both]).await;
    assert_eq!(rc, 0, "{t}");
    // Every new control plane is created (so HEALTHY) before the first namespace moves.
    let at = |needle: &str| t.lines().position(|l| l.contains(needle));
    let last_cp = w
        .clusters
        .iter()
        .map(|cl| at(&format!("k8s_manifest.istio[\"{},1-15-0\"]: created", cl.name)).unwrap_or_else(|| panic!("{t}")))
        .max()
        .unwrap();
    let first_ns = w
        .clusters
        .iter()
        .map(|cl| {
            at(&format!("k8s_namespace.workloads[\"{},sample\"]: updated", cl.name)).unwrap_or_else(|| panic!("{t}"))
        })
        .min()
        .unwrap();
    assert!(last_cp < first_ns, "namespaces move after the new revision is healthy:\n{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), n, "{t}");
    serving("1-15-0").await;
    for i in 0..n {
        assert!(c.exists(i, &["deployment", "istiod-1-14-1", "-n", "istio-system"]).await, "the old one still runs");
    }

    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", r#"revisions=["1-15-0"]"#]).await;
    assert_eq!(rc, 0, "{t}");
    serving("1-15-0").await;
    for i in 0..n {
        assert!(!c.exists(i, &["deployment", "istiod-1-14-1", "-n", "istio-system"]).await, "cluster {i}");
        assert!(!c.exists(i, &["iop", "istio-control-plane-1-14-1", "-n", "istio-system"]).await, "cluster {i}");
        assert!(!c.exists(i, &["deployment", "istio-operator-1-14-1", "-n", "istio-operator"]).await, "cluster {i}");
        assert!(c.exists(i, &["deployment", "istio-operator-1-15-0", "-n", "istio-operator"]).await, "cluster {i}");
        assert!(c.exists(i, &["deployment", "istio-eastwestgateway", "-n", "istio-system"]).await, "cluster {i}");
    }
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode", "--var", r#"revisions=["1-15-0"]"#]).await;
    assert_eq!(rc, 0, "converged:\n{t}");
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
    // The managed mesh comes up in both clusters, and the checks pass.
    assert_eq!(t.matches(": control plane ACTIVE (Ready: asm-managed)").count(), 2, "{t}");
    assert_eq!(t.matches("check remote secret authenticates").count(), 2, "{t}");
    for c in ["cluster-1", "cluster-2"] {
        assert!(t.contains(&format!("check endpoint discovery[\"{c}\"]: ok")), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_guide_autopilot_variant_targets_each_clusters_gke_rule() {
    let mut w = World::default();
    for cl in &mut w.clusters {
        cl.autopilot = true;
    }
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", "autopilot=true"]).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode", "--var", "autopilot=true"]).await;
    assert_eq!(rc, 0, "{t}");
    // What the guide's Autopilot step finds, cluster by cluster.
    let mut want = Vec::new();
    for cl in &w.clusters {
        let filter = format!("--filter=name~gke-{}-[0-9a-z]*-vms", cl.name);
        let o = c.gcloud(&["compute", "firewall-rules", "list", &filter, "--format=value(targetTags[0])"]).await;
        want.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    want.sort();
    let fw = c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    let mut got: Vec<String> =
        fw["targetTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    got.sort();
    assert_eq!(got, want);
    assert!(want.iter().all(|t| !t.is_empty()));
}

/// What the mesh touches outside the clusters' own objects, as gcloud shows it: the firewall
/// rule's source ranges and target tags (if there is one), the fleet's memberships, and each
/// cluster's authorized networks. (Control-plane global access, once turned on for a fleet
/// across regions, is left on: the plans leave it unmanaged, `null`, for one region.)
async fn fleet_footprint(c: &Cloud, w: &World) -> Vec<String> {
    let fw = c.gcloud(&["compute", "firewall-rules", "list", "--format=json(name,sourceRanges,targetTags)"]).await;
    let members = c.gcloud(&["container", "fleet", "memberships", "list", "--format=value(name)"]).await;
    let mut out =
        vec![String::from_utf8_lossy(&fw.stdout).into_owned(), String::from_utf8_lossy(&members.stdout).into_owned()];
    for cl in &w.clusters {
        let d = cluster(c, &cl.name, &cl.location).await;
        out.push(format!("{}: {:?}", cl.name, authorized_networks(&d)));
    }
    out
}

/// A guide on a fleet that starts with one cluster (no pairs: every per-pair block is declared
/// with zero instances), grows to three and shrinks back to one, each step converging (apply,
/// then an empty plan, the checks passing for the clusters there are). Shrunk, the clusters that
/// left hold nothing of the mesh, the one left has no remote secrets, and the firewall and every
/// cluster's authorized networks are as they were before the others joined.
async fn grow_and_shrink(plan: &str, w: World) {
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let step = async |k: usize| {
        let map: Vec<String> = w.clusters[..k].iter().map(|c| format!("\"{}\" = \"{}\"", c.name, c.location)).collect();
        std::fs::write(c.dir.path().join("clusters.toml"), format!("clusters = {{ {} }}\n", map.join(", "))).unwrap();
        let (rc, t) = mf(&c, &["validate", plan, "--var-file", "clusters.toml"]).await;
        assert_eq!(rc, 0, "{k} clusters: {t}");
        let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
        assert_eq!(rc, 0, "{k} clusters: {t}");
        assert_eq!(t.matches("ok   remote secret authenticates").count(), k * (k - 1), "{t}");
        assert_eq!(t.matches("ok   endpoint discovery").count(), k, "{t}");
        let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
        assert_eq!(rc, 0, "{k} clusters, the plan after apply is not empty:\n{t}");
    };
    step(1).await;
    let alone = fleet_footprint(&c, &w).await;
    step(3).await;
    let grown = fleet_footprint(&c, &w).await;
    assert_ne!(alone, grown, "joining changes the firewall, the fleet or the authorized networks");
    step(1).await;
    assert_eq!(fleet_footprint(&c, &w).await, alone, "as before the others joined");
    let remote = |i: usize| {
        let c = &c;
        async move { kubectl_out(c, i, &["get", "secrets", "-A", "-l", "istio/multiCluster=true", "-o", "name"]).await }
    };
    assert_eq!(remote(0).await.trim(), "", "no remote secrets in cluster-1");
    for i in 1..3 {
        assert_eq!(remote(i).await.trim(), "", "cluster {i}");
        assert!(!c.exists(i, &["ns", "sample"]).await, "the sample namespace left cluster {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_guide_grows_from_one_cluster_to_three_and_back() {
    grow_and_shrink("plans/asm-multicluster.toml", world(3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mci_guide_grows_from_one_cluster_to_three_and_back() {
    grow_and_shrink("plans/mci-istio.toml", bare_world(3)).await;
}

/// The planned actions of a plan's text: `(symbol, address)` per change line.
fn planned(t: &str) -> Vec<(String, String)> {
    t.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("  ")?;
            let (sym, rest) = rest.split_once(' ')?;
            let (addr, why) = rest.split_once("  (")?;
            (["+", "~", "-", "-/+", "."].contains(&sym) && !why.starts_with("deleted outside"))
                .then(|| (sym.to_string(), addr.to_string()))
        })
        .collect()
}

/// The shared VPC's footprint of the mesh: the host project's firewall rule and every private
/// cluster's authorized networks.
async fn shared_vpc_footprint(c: &Cloud, w: &World) -> Vec<String> {
    let fw = c
        .gcloud(&[
            "compute",
            "firewall-rules",
            "list",
            "--project=mesh-host",
            "--format=json(name,sourceRanges,targetTags)",
        ])
        .await;
    let mut out = vec![String::from_utf8_lossy(&fw.stdout).into_owned()];
    for cl in w.clusters.iter().filter(|cl| cl.private) {
        let p = format!("--project={}", w.project_of(cl));
        let d = c.describe(&["container", "clusters", "describe", &cl.name, "--location", &cl.location, &p]).await;
        out.push(format!("{}: {:?}", cl.name, authorized_networks(&d)));
    }
    out
}

/// The asm plan in discovery mode on testdata/worlds/shared-vpc.toml (a host project and two
/// service projects): the clusters labelled `mesh=prod` form the mesh; a fourth cluster labelled
/// with gcloud is a drift finding, joins with exactly its objects and pairs, and leaves again
/// when the label goes, the firewall and authorized networks as before; a cluster deleted is
/// planned out, its objects forgotten (`forget: cluster gone`) and what refers to it removed.
#[tokio::test(flavor = "multi_thread")]
async fn asm_discovery_follows_the_fleet_across_a_shared_vpc() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/worlds/shared-vpc.toml");
    let w = World::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    std::fs::write(
        c.dir.path().join("clusters.toml"),
        "discover = true\nproject = \"mesh-host\"\nnetwork = \"shared-net\"\ncluster_projects = [\"svc-alpha\", \"svc-beta\"]\ncluster_labels = { mesh = \"prod\" }\n",
    )
    .unwrap();
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), 6, "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), 3, "{t}");
    assert!(!t.contains("alpha-2") && !t.contains("beta-stage"), "only the clusters labelled mesh=prod: {t}");
    let fw =
        c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods", "--project=mesh-host"]).await;
    assert!(fw["network"].as_str().unwrap().ends_with("/projects/mesh-host/global/networks/shared-net"), "{fw}");
    let before = shared_vpc_footprint(&c, &w).await;

    // A fourth cluster starts matching.
    let label = |flag: &'static str| {
        let c = &c;
        async move {
            let args =
                ["container", "clusters", "update", "alpha-2", "--project=svc-alpha", "--zone=us-central1-c", flag];
            c.gcloud(&args).await;
        }
    };
    label("--update-labels=mesh=prod").await;
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains("cluster `alpha-2` matches data.gke_clusters.discovered but is not in the mesh"), "{t}");
    let (rc, t) = mf(&c, &["plan", plan]).await;
    assert_eq!(rc, 0, "{t}");
    let joined = planned(&t);
    let added: Vec<&String> = joined.iter().filter(|(s, _)| s == "+").map(|(_, a)| a).collect();
    assert_eq!(added.len(), 11, "its access, namespace, 3 manifests and 6 remote secrets: {joined:?}");
    assert!(added.iter().all(|a| a.contains("alpha-2")), "{joined:?}");
    assert!(joined.iter().all(|(s, a)| s == "+" || s == "~" && !a.contains("alpha-2")), "nothing else: {joined:?}");
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), 12, "{t}");
    assert_eq!(t.matches("ok   endpoint discovery").count(), 4, "{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "converged: {t}");
    assert_ne!(shared_vpc_footprint(&c, &w).await, before, "alpha-2's pods are let in");

    // It stops matching: exactly what joined leaves.
    label("--remove-labels=mesh").await;
    let (rc, t) = mf(&c, &["plan", plan]).await;
    assert_eq!(rc, 0, "{t}");
    let left = planned(&t);
    let mut removed: Vec<&String> = left.iter().filter(|(s, _)| s == "-").map(|(_, a)| a).collect();
    removed.sort();
    let mut added = added;
    added.sort();
    assert_eq!(removed, added, "{left:?}");
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(shared_vpc_footprint(&c, &w).await, before, "the firewall and authorized networks as before it joined");

    // A cluster is deleted: its objects are forgotten, what refers to it in the others removed.
    c.gcloud(&["container", "clusters", "delete", "beta-1", "--project=svc-beta", "--zone=europe-west1-b", "--quiet"])
        .await;
    let (rc, t) = mf(&c, &["drift", plan]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(t.contains("cluster `beta-1` is gone"), "{t}");
    let (rc, t) = mf(&c, &["plan", plan]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("forget: removed from state: cluster gone (`beta-1`)").count(), 4, "{t}");
    assert!(t.contains("- mesh_remote_secret.crosswise[\"alpha-1,beta-1\"]"), "{t}");
    assert!(t.contains("- mesh_remote_secret.crosswise[\"beta-1,alpha-1\"]"), "{t}");
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "converged: {t}");
    let alpha1 = w.clusters.iter().position(|cl| cl.name == "alpha-1").unwrap();
    let secrets = kubectl_out(&c, alpha1, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
    assert!(!secrets.contains("beta-1"), "nothing of beta-1 is left in alpha-1: {secrets}");
}

/// How each request of the clusters' API servers since `from` came in (`ip`, `dns`, `gateway`).
fn ways_in(c: &Cloud, from: &[usize]) -> std::collections::BTreeSet<&'static str> {
    let mut ways = std::collections::BTreeSet::new();
    for (k, start) in c.sim.kube.iter().zip(from) {
        ways.extend(k.log.lock().unwrap()[*start..].iter().map(|e| e.4.name()));
    }
    ways
}

fn log_lengths(c: &Cloud) -> Vec<usize> {
    c.sim.kube.iter().map(|k| k.log.lock().unwrap().len()).collect()
}

/// A hosted CI runner outside the VPC, private clusters without public endpoints, registered to
/// the fleet: the asm plan reaches them only with `connect = "connect-gateway"` and
/// `connect = "gke-dns"` (applied with each, every request going that way), checks the remote
/// secrets from there, and finds and repairs a secret that points elsewhere and a revoked token.
#[tokio::test(flavor = "multi_thread")]
async fn asm_plan_reaches_private_control_planes_through_the_connect_gateway_and_dns_endpoints() {
    let mut w = World { runner_in_vpc: false, ..World::default() };
    for cl in &mut w.clusters {
        (cl.public_endpoint, cl.fleet) = (false, true);
    }
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let plan = "plans/asm-multicluster.toml";
    let (rc, t) = mf(&c, &["plan", plan]).await;
    assert!(rc == 1 && t.contains("Connection refused"), "the kubeconfig's IP endpoints are closed:\n{t}");
    let (rc, t) = mf(&c, &["plan", plan, "--var", "connect=gateway"]).await;
    assert!(rc == 1 && t.contains("cannot look up clusters `cluster-1`, `cluster-2`"), "{t}");
    assert!(t.contains("[clusters.mesh]") && t.contains("`connect` must be one of \"kubeconfig\", \"gke\", \"gke-internal\", \"gke-dns\", \"connect-gateway\", not \"gateway\""), "{t}");

    let start = log_lengths(&c);
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", "connect=connect-gateway"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(
        t.matches("ok   remote secret authenticates").count() + t.matches("ok   endpoint discovery").count(),
        4,
        "{t}"
    );
    assert_eq!(ways_in(&c, &start), ["gateway"].into(), "every request through the gateway");
    let (rc, t) = mf(&c, &["plan", plan, "--detailed-exitcode", "--var", "connect=connect-gateway"]).await;
    assert_eq!(rc, 0, "{t}");

    // The same state, reached through the DNS-based endpoints.
    let start = log_lengths(&c);
    let (rc, t) = mf(&c, &["drift", plan, "--var", "connect=gke-dns"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(ways_in(&c, &start), ["dns"].into(), "every request through the DNS endpoints");

    // cluster-2's secret for cluster-1 now names another server: found from outside the VPC,
    // without dialling it (kubectl, too, goes through the DNS endpoint gcloud configures).
    c.gcloud(&[
        "container",
        "clusters",
        "get-credentials",
        "cluster-2",
        "--location",
        "europe-west1-b",
        "--dns-endpoint",
    ])
    .await;
    let data = kubectl_out(
        &c,
        1,
        &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "jsonpath={.data.cluster-1}"],
    )
    .await;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kc = String::from_utf8(b64.decode(data.trim()).unwrap()).unwrap();
    let server = kc.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let wrong = b64.encode(kc.replace(&server, "https://10.9.9.9:443").as_bytes());
    let patch = format!(r#"{{"data":{{"cluster-1":"{wrong}"}}}}"#);
    c.kubectl(
        1,
        &["patch", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "--type", "merge", "-p", &patch],
    )
    .await;
    // And cluster-2's token for cluster-1's istiod is revoked (its token Secret deleted).
    let token = "istio-reader-service-account-istio-remote-secret-token-cluster-1";
    c.kubectl(1, &["delete", "secret", token, "-n", "istio-system"]).await;
    let (rc, t) = mf(&c, &["drift", plan, "--var", "connect=gke-dns"]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(
        t.contains("FAIL remote secret authenticates[\"cluster-2,cluster-1\"]: istio-remote-secret-cluster-2: its token does not authenticate in `cluster-2`: invalid bearer token"),
        "{t}"
    );
    assert!(
        t.contains(&format!("FAIL remote secret authenticates[\"cluster-1,cluster-2\"]: istio-remote-secret-cluster-1 points at https://10.9.9.9:443, which is not an endpoint of `cluster-1` ({server})")),
        "{t}"
    );
    // Apply repairs both, through the DNS endpoints this time.
    let start = log_lengths(&c);
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", "connect=gke-dns"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), 2, "{t}");
    assert_eq!(ways_in(&c, &start), ["dns"].into());

    // A token that authenticates but whose account may not read: RBAC's answer, per pair.
    c.gcloud(&[
        "container",
        "clusters",
        "get-credentials",
        "cluster-1",
        "--location",
        "us-central1-a",
        "--dns-endpoint",
    ])
    .await;
    let other = kubectl_out(&c, 0, &["create", "token", "default", "-n", "istio-system"]).await;
    let data = kubectl_out(
        &c,
        1,
        &["get", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "-o", "jsonpath={.data.cluster-1}"],
    )
    .await;
    let kc = String::from_utf8(b64.decode(data.trim()).unwrap()).unwrap();
    let token = kc.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap().to_string();
    let swapped = b64.encode(kc.replace(&token, other.trim()).as_bytes());
    let patch = format!(r#"{{"data":{{"cluster-1":"{swapped}"}}}}"#);
    c.kubectl(
        1,
        &["patch", "secret", "istio-remote-secret-cluster-1", "-n", "istio-system", "--type", "merge", "-p", &patch],
    )
    .await;
    let (rc, t) = mf(&c, &["drift", plan, "--var", "connect=connect-gateway"]).await;
    assert_eq!(rc, 2, "{t}");
    assert!(
        t.contains("FAIL remote secret authenticates[\"cluster-1,cluster-2\"]: the kubeconfig in cluster-2/istio-system/istio-remote-secret-cluster-1 cannot list services in `cluster-1`: system:serviceaccount:istio-system:default may not list /api/v1/services: services is forbidden"),
        "{t}"
    );
    let (rc, t) = mf(&c, &["apply", plan, "--auto-approve", "--var", "connect=gke-dns"]).await;
    assert_eq!(rc, 0, "{t}");
    let (rc, t) = mf(&c, &["drift", plan, "--var", "connect=connect-gateway"]).await;
    assert_eq!(rc, 0, "{t}");
}
