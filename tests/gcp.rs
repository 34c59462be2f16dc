//! The Google Cloud provider against the simulator, through the real `meshform` binary (and the
//! real gcloud for out-of-band changes and comparisons).
//!
//! Needs gcloud and openssl on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

/// A change made with gcloud behind meshform's back, and what `drift` must name: an attribute,
/// or `None` when the change deletes the object.
type OutOfBand<'a> = (&'a [&'a str], Option<&'a str>);

/// create → no-op plan → gcloud change reported by drift and repaired → in-place update →
/// replace → state rm + import → delete, for one type.
async fn lifecycle(
    c: &Cloud,
    addr: &str,
    v1: &str,
    oob: OutOfBand<'_>,
    update: Option<&str>,
    replace: Option<&str>,
    import_id: &str,
) {
    c.write(v1);
    c.apply().await;
    c.assert_no_changes().await;
    c.gcloud(oob.0).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "gcloud {:?} not reported:\n{t}", oob.0);
    let named = match oob.1 {
        Some(attr) => t.lines().any(|l| l.trim_start().starts_with(&format!("~ {attr} "))),
        None => t.contains("deleted"),
    };
    assert!(t.contains(addr) && named, "drift must name {addr} and {:?}:\n{t}", oob.1);
    c.apply().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "not repaired:\n{}", text(&o));
    if let Some(v2) = update {
        c.write(v2);
        let (code, t) = c.plan().await;
        assert_eq!(code, 2, "{t}");
        assert!(t.contains(&format!("~ {addr}")), "expected an in-place update of {addr}:\n{t}");
        c.apply().await;
        c.assert_no_changes().await;
    }
    let current = match replace {
        Some(v3) => {
            c.write(v3);
            let (code, t) = c.plan().await;
            assert_eq!(code, 2, "{t}");
            assert!(
                t.contains(&format!("-/+ {addr}")) && t.contains("forces replacement"),
                "expected a replacement of {addr}:\n{t}"
            );
            c.apply().await;
            c.assert_no_changes().await;
            v3
        }
        None => update.unwrap_or(v1),
    };
    let o = c.mf(&["state", "rm", "main.toml", addr]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.mf(&["import", "main.toml", addr, import_id]).await;
    assert_eq!(code(&o), 0, "import: {}", text(&o));
    c.assert_no_changes().await;
    c.write(&current.lines().take_while(|l| !l.starts_with("[resources")).collect::<Vec<_>>().join("\n"));
    let (code, t) = c.plan().await;
    assert_eq!(code, 2);
    assert!(t.contains(&format!("- {addr}")), "{t}");
    c.apply().await;
    c.assert_no_changes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_lifecycle() {
    let c = Cloud::default().await;
    let fw = |prio: u32, dir: &str| {
        // The in-place update also turns logging on and targets a service account.
        let extra = if prio == 800 {
            "log_config = {}\ntarget_service_accounts = [\"mesh@meshform-demo.iam.gserviceaccount.com\"]\n"
        } else {
            ""
        };
        format!(
            "[resources.gcp_firewall.fw]\nname = \"fw\"\ndirection = \"{dir}\"\npriority = {prio}\nallow = [{{ protocol = \"tcp\", ports = [\"80\", \"443\"] }}]\nsource_ranges = [\"10.0.0.0/8\"]\n{extra}"
        )
    };
    let oob: OutOfBand = (&["compute", "firewall-rules", "update", "fw", "--priority=1000"], Some("priority"));
    lifecycle(
        &c,
        "gcp_firewall.fw",
        &fw(900, "INGRESS"),
        oob,
        Some(&fw(800, "INGRESS")),
        Some(&fw(800, "EGRESS")),
        "fw",
    )
    .await;
    let gone = c.run("gcloud", &["compute", "firewall-rules", "describe", "fw"], &[], &[]).await;
    assert_ne!(code(&gone), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn global_address_lifecycle() {
    let c = Cloud::default().await;
    let a = |labels: &str, desc: &str| {
        format!(
            "[resources.gcp_global_address.ip]\nname = \"mci-ip\"\ndescription = \"{desc}\"\nlabels = {{ {labels} }}\n"
        )
    };
    lifecycle(
        &c,
        "gcp_global_address.ip",
        &a("team = \"mesh\"", "one"),
        (
            &["beta", "compute", "addresses", "update", "mci-ip", "--global", "--update-labels=team=other"],
            Some("labels"),
        ),
        Some(&a("team = \"mesh\", env = \"prod\"", "one")),
        Some(&a("env = \"prod\"", "two")),
        "mci-ip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn neg_lifecycle() {
    let c = Cloud::default().await;
    let n = |port: u32| {
        format!(
            "[resources.gcp_network_endpoint_group.neg]\nzone = \"us-central1-a\"\nname = \"neg-1\"\nsubnetwork = \"default\"\ndefault_port = {port}\n"
        )
    };
    let oob: OutOfBand =
        (&["compute", "network-endpoint-groups", "delete", "neg-1", "--zone=us-central1-a", "--quiet"], None);
    lifecycle(&c, "gcp_network_endpoint_group.neg", &n(80), oob, None, Some(&n(443)), "us-central1-a/neg-1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_access_lifecycle() {
    let c = Cloud::default().await;
    let a = |cluster: &str, loc: &str, nets: &str, ga: bool| {
        format!(
            "[resources.gke_control_plane_access.cp]\nlocation = \"{loc}\"\ncluster = \"{cluster}\"\nauthorized_networks = [{nets}]\nglobal_access = {ga}\n"
        )
    };
    lifecycle(
        &c,
        "gke_control_plane_access.cp",
        &a("cluster-1", "us-central1-a", "\"10.4.0.0/14\"", false),
        (
            &["container", "clusters", "update", "cluster-1", "--zone=us-central1-a", "--enable-master-global-access"],
            Some("global_access"),
        ),
        Some(&a("cluster-1", "us-central1-a", "\"10.4.0.0/14\", \"192.168.0.0/24\"", true)),
        Some(&a("cluster-2", "europe-west1-b", "\"10.0.0.0/14\"", true)),
        "europe-west1-b/cluster-2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_membership_and_feature_lifecycle() {
    let c = Cloud::default().await;
    let m = |labels: &str, id: &str| {
        format!(
            "[resources.gke_fleet_membership.m]\nlocation = \"us-central1\"\nmembership_id = \"{id}\"\ngke_cluster = \"us-central1-a/cluster-1\"\nlabels = {{ {labels} }}\n"
        )
    };
    lifecycle(
        &c,
        "gke_fleet_membership.m",
        &m("", "cluster-1"),
        (
            &[
                "container",
                "fleet",
                "memberships",
                "update",
                "cluster-1",
                "--location=us-central1",
                "--update-labels=team=x",
            ],
            Some("labels"),
        ),
        Some(&m("team = \"mesh\"", "cluster-1")),
        Some(&m("team = \"mesh\"", "c1")),
        "us-central1/c1",
    )
    .await;

    let members = "[resources.gke_fleet_membership.m1]\nlocation = \"us-central1\"\nmembership_id = \"cluster-1\"\ngke_cluster = \"us-central1-a/cluster-1\"\n\n[resources.gke_fleet_membership.m2]\nlocation = \"europe-west1\"\nmembership_id = \"cluster-2\"\ngke_cluster = \"europe-west1-b/cluster-2\"\n\n";
    let f = |config: &str| {
        format!(
            "{members}[resources.gke_fleet_feature.mci]\nname = \"multiclusteringress\"\nconfig_membership = \"${{gke_fleet_membership.{config}.name}}\"\n"
        )
    };
    c.write(&f("m1"));
    c.apply().await;
    let d = c.describe(&["container", "fleet", "ingress", "describe"]).await;
    assert_eq!(
        d["spec"]["multiclusteringress"]["configMembership"],
        "projects/meshform-demo/locations/us-central1/memberships/cluster-1"
    );
    assert_eq!(d["state"]["state"]["code"], "OK");
    c.assert_no_changes().await;
    c.gcloud(&[
        "container",
        "fleet",
        "ingress",
        "update",
        "--config-membership=projects/meshform-demo/locations/europe-west1/memberships/cluster-2",
    ])
    .await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert!(code(&o) == 2 && text(&o).contains("~ config_membership"), "{}", text(&o));
    c.apply().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.write(&f("m2"));
    let (code, t) = c.plan().await;
    assert!(code == 2 && t.contains("~ gke_fleet_feature.mci"), "{t}");
    c.apply().await;
    let d = c.describe(&["container", "fleet", "ingress", "describe"]).await;
    assert_eq!(
        d["spec"]["multiclusteringress"]["configMembership"],
        "projects/meshform-demo/locations/europe-west1/memberships/cluster-2"
    );
    let o = c.mf(&["state", "rm", "main.toml", "gke_fleet_feature.mci"]).await;
    assert_eq!(o.status.code(), Some(0));
    let o = c.mf(&["import", "main.toml", "gke_fleet_feature.mci", "multiclusteringress"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    c.assert_no_changes().await;
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = c.run("gcloud", &["container", "fleet", "memberships", "list", "--format=value(name)"], &[], &[]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_made_with_gcloud_is_reported_and_repaired() {
    let c = Cloud::default().await;
    c.write("[resources.gcp_firewall.fw]\nname = \"fw\"\npriority = 900\nallow = [{ protocol = \"tcp\" }]\nsource_ranges = [\"10.0.0.0/8\"]\n");
    c.apply().await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.gcloud(&["compute", "firewall-rules", "update", "fw", "--priority=1000"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("gcp_firewall.fw") && text(&o).contains("priority = 900 -> 1000"), "{}", text(&o));
    c.apply().await;
    let d = c.describe(&["compute", "firewall-rules", "describe", "fw"]).await;
    assert_eq!(d["priority"], 900);
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    // Deleted out of band: reported, and recreated by apply.
    c.gcloud(&["compute", "firewall-rules", "delete", "fw", "--quiet"]).await;
    let o = c.mf(&["drift", "main.toml"]).await;
    assert!(code(&o) == 2 && text(&o).contains("deleted outside meshform"), "{}", text(&o));
    c.apply().await;
    c.assert_no_changes().await;
}

const GUIDE_RULE: &str = r#"
[resources.gcp_firewall.pods]
name = "istio-multicluster-pods"
network = "default"
direction = "INGRESS"
priority = 900
allow = [{ protocol = "tcp" }, { protocol = "udp" }, { protocol = "icmp" }, { protocol = "esp" }, { protocol = "ah" }, { protocol = "sctp" }]
source_ranges = "${clusters.*.pod_cidr}"
target_tags = "${clusters.*.node_tag}"
"#;

async fn guide_rule_matches_gcloud(world: World) {
    let clusters: String =
        world.clusters.iter().map(|cl| format!("[clusters.{}]\nlocation = \"{}\"\n\n", cl.name, cl.location)).collect();
    let c = Cloud::start(SimOptions { world, ..SimOptions::default() }).await;
    // The guide's manual steps: look the values up with gcloud, paste them into firewall-rules create.
    let cidrs = c.gcloud(&["container", "clusters", "list", "--format=value(clusterIpv4Cidr)"]).await;
    let mut cidrs: Vec<String> = String::from_utf8_lossy(&cidrs.stdout).lines().map(String::from).collect();
    cidrs.sort();
    let tags = c.gcloud(&["compute", "instances", "list", "--format=value(tags.items.[0])"]).await;
    let mut tags: Vec<String> = String::from_utf8_lossy(&tags.stdout).lines().map(String::from).collect();
    tags.sort();
    tags.dedup();
    c.gcloud(&[
        "compute",
        "firewall-rules",
        "create",
        "istio-multicluster-pods",
        "--allow=tcp,udp,icmp,esp,ah,sctp",
        "--direction=INGRESS",
        "--priority=900",
        &format!("--source-ranges={}", cidrs.join(",")),
        &format!("--target-tags={}", tags.join(",")),
        "--network=default",
        "--quiet",
    ])
    .await;
    let by_gcloud = c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    c.gcloud(&["compute", "firewall-rules", "delete", "istio-multicluster-pods", "--quiet"]).await;
    c.write(&format!("{clusters}{GUIDE_RULE}"));
    c.apply().await;
    let by_meshform = c.describe(&["compute", "firewall-rules", "describe", "istio-multicluster-pods"]).await;
    for field in [
        "name",
        "network",
        "direction",
        "priority",
        "allowed",
        "denied",
        "sourceRanges",
        "targetTags",
        "sourceTags",
        "destinationRanges",
        "disabled",
        "logConfig",
    ] {
        assert_eq!(by_meshform.get(field), by_gcloud.get(field), "field {field} differs");
    }
    assert_eq!(by_meshform["sourceRanges"].as_array().unwrap().len(), cidrs.len());
    assert_eq!(by_meshform["targetTags"].as_array().unwrap().len(), cidrs.len());
    c.assert_no_changes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_firewall_rule_equals_the_manual_one_for_two_clusters() {
    guide_rule_matches_gcloud(World::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guide_firewall_rule_equals_the_manual_one_for_three_clusters() {
    let mut w = World::default();
    let mut third = w.clusters[0].clone();
    third.name = "cluster-3".into();
    third.location = "us-central1-b".into();
    third.pod_cidr = "10.8.0.0/14".into();
    w.clusters.push(third);
    guide_rule_matches_gcloud(w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_existing_keeps_networks_added_earlier_and_destroy_restores_them() {
    let c = Cloud::default().await;
    // Someone added a network by hand before meshform manages the cluster.
    c.gcloud(&[
        "container",
        "clusters",
        "update",
        "cluster-1",
        "--zone",
        "us-central1-a",
        "--enable-master-authorized-networks",
        "--master-authorized-networks",
        "203.0.113.0/24,198.51.100.7/32",
    ])
    .await;
    c.write("[clusters.cluster-1]\nlocation = \"us-central1-a\"\n[clusters.cluster-2]\nlocation = \"europe-west1-b\"\n\n[resources.gke_control_plane_access.c1]\nlocation = \"us-central1-a\"\ncluster = \"cluster-1\"\nauthorized_networks = [\"${clusters.cluster-2.pod_cidr}\"]\nkeep_existing = true\nglobal_access = true\n");
    c.apply().await;
    let d = c.describe(&["container", "clusters", "describe", "cluster-1", "--zone", "us-central1-a"]).await;
    let blocks = common::authorized_networks(&d);
    assert_eq!(blocks, ["10.4.0.0/14", "198.51.100.7/32", "203.0.113.0/24"]);
    assert_eq!(d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"], true);
    c.assert_no_changes().await;
    let o = c.mf(&["destroy", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let d = c.describe(&["container", "clusters", "describe", "cluster-1", "--zone", "us-central1-a"]).await;
    let blocks = common::authorized_networks(&d);
    assert_eq!(blocks, ["198.51.100.7/32", "203.0.113.0/24"], "destroy restores the original list");
    assert_eq!(d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_objects_converge_under_injected_faults() {
    let c = Cloud::start(SimOptions { fault_rate: 0.2, seed: 42, lro_polls: 1, ..SimOptions::default() }).await;
    let mut toml = String::new();
    for i in 0..25 {
        toml.push_str(&format!("[resources.gcp_firewall.fw{i}]\nname = \"fw-{i}\"\nallow = [{{ protocol = \"tcp\", ports = [\"{}\"] }}]\nsource_ranges = [\"10.{i}.0.0/16\"]\n\n", 8000 + i));
        toml.push_str(&format!(
            "[resources.gcp_global_address.ip{i}]\nname = \"ip-{i}\"\nlabels = {{ n = \"{i}\" }}\n\n"
        ));
    }
    c.write(&toml);
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--parallelism", "10"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(c.sim.log().iter().any(|l| l.injected), "faults were injected");
    c.assert_no_changes().await;
    {
        let st = c.sim.shared.store.lock().unwrap();
        let fws = st.firewalls.keys().filter(|k| k.starts_with("fw-")).count();
        let ips = st.addresses.keys().filter(|k| k.starts_with("ip-")).count();
        assert_eq!((fws, ips), (25, 25), "nothing duplicated or lost");
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap()).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 50);
    // And destroy converges too.
    let o = c.mf(&["destroy", "main.toml", "--auto-approve", "--parallelism", "10"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = c.sim.shared.store.lock().unwrap();
    assert!(!st.firewalls.keys().any(|k| k.starts_with("fw-")) && !st.addresses.keys().any(|k| k.starts_with("ip-")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_reply_is_lost_is_retried_and_adopted_once() {
    let c = Cloud::default().await;
    c.write("[resources.gcp_firewall.fw]\nname = \"lost\"\nallow = [{ protocol = \"tcp\" }]\nsource_ranges = [\"10.0.0.0/8\"]\n");
    c.sim.shared.lose_replies.store(1, std::sync::atomic::Ordering::SeqCst);
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let inserts: Vec<u16> = c
        .sim
        .log()
        .iter()
        .filter(|l| l.method == "POST" && l.path.ends_with("/global/firewalls"))
        .map(|l| l.status)
        .collect();
    assert_eq!(inserts, [503, 409], "the insert was made, its reply lost, the retry found it");
    assert!(
        text(&o).contains("firewall rule lost already existed and matches the desired state; adopted it"),
        "{}",
        text(&o)
    );
    assert_eq!(c.sim.shared.store.lock().unwrap().firewalls.keys().filter(|k| *k == "lost").count(), 1);
    c.assert_no_changes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_conflicts_adopt_a_match_and_point_at_import_otherwise() {
    let c = Cloud::default().await;
    c.gcloud(&["compute", "firewall-rules", "create", "same", "--allow=tcp:80", "--source-ranges=10.0.0.0/8"]).await;
    c.gcloud(&[
        "compute",
        "firewall-rules",
        "create",
        "other",
        "--allow=tcp:80",
        "--source-ranges=10.0.0.0/8",
        "--priority=700",
    ])
    .await;
    let rule = |name: &str| {
        format!(
            "[resources.gcp_firewall.{name}]\nname = \"{name}\"\npriority = 1000\nallow = [{{ protocol = \"tcp\", ports = [\"80\"] }}]\nsource_ranges = [\"10.0.0.0/8\"]\n\n"
        )
    };
    c.write(&rule("same"));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        text(&o).contains("firewall rule same already existed and matches the desired state; adopted it"),
        "{}",
        text(&o)
    );
    c.assert_no_changes().await;
    c.write(&(rule("same") + &rule("other")));
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("differs from the desired state in priority") && text(&o).contains("meshform import"),
        "{}",
        text(&o)
    );
    let d = c.describe(&["compute", "firewall-rules", "describe", "other"]).await;
    assert_eq!(d["priority"], 700, "the existing rule is left alone");
}

#[tokio::test(flavor = "multi_thread")]
async fn application_default_credentials_from_a_service_account_key() {
    let c = Cloud::default().await;
    let path = c.service_account_key();
    c.write(
        "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[resources.gcp_global_address.ip]\nname = \"adc-ip\"\n",
    );
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["apply", "main.toml", "--auto-approve"],
            &["MESHFORM_GCP_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"],
            &[("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string())],
        )
        .await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let log = c.sim.log();
    assert!(log.iter().any(|l| l.path == "/token" && l.status == 200));
    assert!(log.iter().any(|l| l.method == "POST" && l.path.ends_with("/global/addresses") && l.status == 200));
    assert!(!text(&o).contains("sim-sa-"), "tokens never appear in output");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_of_500_firewall_rules_uses_list_calls() {
    let c = Cloud::start(SimOptions { lro_polls: 0, ..SimOptions::default() }).await;
    let mut toml = String::new();
    for i in 0..500 {
        toml.push_str(&format!("[resources.gcp_firewall.r{i}]\nname = \"rule-{i}\"\nallow = [{{ protocol = \"tcp\" }}]\nsource_ranges = [\"10.{}.{}.0/24\"]\n\n", i / 256, i % 256));
    }
    c.write(&toml);
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--parallelism", "20"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    c.sim.clear_log();
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let log = c.sim.log();
    let lists = log.iter().filter(|l| l.method == "GET" && l.path.ends_with("/global/firewalls")).count();
    let gets = log.iter().filter(|l| l.method == "GET" && l.path.contains("/global/firewalls/")).count();
    assert!(lists <= 2, "{lists} list calls");
    assert_eq!(gets, 0, "no per-object GETs");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_sources_and_missing_clusters() {
    let c = Cloud::default().await;
    c.write(r#"
[data.gcp_instances.nodes]
filter = 'name eq "gke-cluster-1-.*"'

[data.gcp_firewalls.none]
filter = 'name eq "nothing-.*"'

[data.gke_cluster.c2]
location = "europe-west1-b"
name = "cluster-2"

[resources.meshform_data.out]
input = { tags = "${data.gcp_instances.nodes.tags}", n = "${length(data.gcp_instances.nodes.names)}", none = "${data.gcp_firewalls.none.names}", pe = "${data.gke_cluster.c2.private_endpoint}" }
"#);
    c.apply().await;
    let o = c.mf(&["state", "show", "main.toml", "meshform_data.out"]).await;
    let t = text(&o);
    assert!(
        t.contains("n = 3") && t.contains("gke-cluster-1-") && t.contains("none = []") && t.contains("127.0.0.2:"),
        "{t}"
    );
    c.write("[clusters.nope]\nlocation = \"us-central1-a\"\n\n[resources.meshform_data.x]\ninput = \"${clusters.nope.endpoint}\"\n");
    let o = c.mf(&["plan", "main.toml"]).await;
    assert_eq!(code(&o), 1);
    assert!(
        text(&o).contains("cannot look up cluster `nope`") && text(&o).contains("`nope` does not exist"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_lookups_expose_the_guides_inputs_including_autopilot() {
    let mut w = World::default();
    let mut ap = w.clusters[0].clone();
    ap.name = "auto".into();
    ap.location = "us-central1".into();
    ap.autopilot = true;
    ap.pod_cidr = "10.12.0.0/14".into();
    w.clusters.push(ap);
    let c = Cloud::start(SimOptions { world: w, ..SimOptions::default() }).await;
    c.write(
        "[clusters.cluster-1]\nlocation = \"us-central1-a\"\n\n[clusters.auto]\nlocation = \"us-central1\"\n\n[resources.meshform_data.v]\ninput = { tag = \"${clusters.auto.node_tag}\", ap = \"${clusters.auto.autopilot}\", priv = \"${clusters.cluster-1.private}\", m = \"${clusters.cluster-1.membership_name}\", ca = \"${length(clusters.cluster-1.ca_certificate) > 100}\", nets = \"${clusters.cluster-1.authorized_networks}\" }\n",
    );
    c.apply().await;
    let rules = c
        .gcloud(&["compute", "firewall-rules", "list", "--filter=name~^gke-auto-", "--format=value(targetTags)"])
        .await;
    let tag = String::from_utf8_lossy(&rules.stdout).trim().to_string();
    let o = c.mf(&["state", "show", "main.toml", "meshform_data.v"]).await;
    let t = text(&o);
    assert!(t.contains(&format!("tag = \"{tag}\"")), "{tag}: {t}");
    assert!(t.contains("ap = true") && t.contains("priv = true") && t.contains("ca = true"), "{t}");
    assert!(t.contains("m = \"projects/meshform-demo/locations/us-central1/memberships/cluster-1\""), "{t}");
    assert!(t.contains("nets = [\"203.0.113.0/24\"]"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_timeout_bounds_waiting_for_its_operation() {
    // gkehub operations that take 12 polls (over 20 s of backoff): the resource allows 2 s.
    let c = Cloud::start(SimOptions { lro_polls: 12, ..SimOptions::default() }).await;
    c.write("[resources.gke_fleet_membership.m]\nlocation = \"us-central1\"\nmembership_id = \"cluster-1\"\ngke_cluster = \"us-central1-a/cluster-1\"\ntimeouts = { create = \"2s\" }\n");
    let started = std::time::Instant::now();
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("2s"), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "gave up at its timeout, not the provider's");
    // The operation finished in the background: the next apply adopts what it made.
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
}
