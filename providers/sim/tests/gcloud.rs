//! The real gcloud 528 against the simulator: every command of the setup guides (the reference's
//! "What gcloud 528 sends"), what a following describe/list shows, out-of-band changes, faults,
//! operation polls, and service-account keys whose token_uri is the simulator.
//!
//! Needs gcloud and openssl on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use common::Env;
use meshform_sim::SimOptions;

#[tokio::test(flavor = "multi_thread")]
async fn addresses_create_list_label_delete() {
    let e = Env::default().await;
    e.gcloud(&["compute", "addresses", "create", "my-ip", "--global"]).await.ok();
    let list = e.gcloud(&["compute", "addresses", "list", "--global", "--format=json"]).await;
    let j = Env::json(list.ok());
    assert_eq!(j[0]["name"], "my-ip");
    assert_eq!(j[0]["status"], "RESERVED");
    assert_eq!(j[0]["ipVersion"], "IPV4");
    assert!(j[0]["address"].as_str().unwrap().parse::<std::net::Ipv4Addr>().is_ok());
    let again = e.gcloud(&["compute", "addresses", "create", "my-ip", "--global"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    e.gcloud(&["beta", "compute", "addresses", "update", "my-ip", "--global", "--update-labels=env=prod"]).await.ok();
    let d = Env::json(e.gcloud(&["compute", "addresses", "describe", "my-ip", "--global", "--format=json"]).await.ok());
    assert_eq!(d["labels"]["env"], "prod");
    assert_ne!(d["labelFingerprint"], "42WmSpB8rSM=");
    e.gcloud(&["compute", "addresses", "delete", "my-ip", "--global", "--quiet"]).await.ok();
    let gone = e.gcloud(&["compute", "addresses", "describe", "my-ip", "--global"]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("was not found"), "{}", gone.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_rule_of_the_guide_and_filters() {
    let e = Env::default().await;
    e.gcloud(&[
        "compute",
        "firewall-rules",
        "create",
        "istio-multicluster-pods",
        "--allow=tcp,udp,icmp,esp,ah,sctp",
        "--direction=INGRESS",
        "--priority=900",
        "--source-ranges=10.0.0.0/14,10.4.0.0/14",
        "--target-tags=gke-a-node,gke-b-node",
        "--network=default",
        "--quiet",
    ])
    .await
    .ok();
    e.gcloud(&[
        "compute",
        "firewall-rules",
        "create",
        "cluster-1-other",
        "--allow=tcp:15017",
        "--network=default",
        "--quiet",
    ])
    .await
    .ok();
    let d = Env::json(
        e.gcloud(&["compute", "firewall-rules", "describe", "istio-multicluster-pods", "--format=json"]).await.ok(),
    );
    let protos: Vec<&str> =
        d["allowed"].as_array().unwrap().iter().map(|a| a["IPProtocol"].as_str().unwrap()).collect();
    assert_eq!(protos, ["tcp", "udp", "icmp", "esp", "ah", "sctp"]);
    assert_eq!(d["priority"], 900);
    assert_eq!(d["direction"], "INGRESS");
    assert_eq!(d["sourceRanges"], serde_json::json!(["10.0.0.0/14", "10.4.0.0/14"]));
    assert_eq!(d["targetTags"], serde_json::json!(["gke-a-node", "gke-b-node"]));
    assert!(d["network"].as_str().unwrap().ends_with("/projects/meshform-demo/global/networks/default"));
    // --filter really filters, on the server (gcloud does not filter again).
    let tags =
        e.gcloud(&["compute", "firewall-rules", "list", "--filter=Name:istio*", "--format=value(targetTags)"]).await;
    assert_eq!(tags.ok().stdout.trim(), "gke-a-node;gke-b-node");
    let names =
        e.gcloud(&["compute", "firewall-rules", "list", "--filter=Name:cluster-1*", "--format=value(name)"]).await;
    assert_eq!(names.ok().stdout.trim(), "cluster-1-other");
    assert!(e.sim.log().iter().any(|l| l.path.ends_with("/global/firewalls") && l.query.contains("filter=")));
    // An out-of-band change is visible to the next read.
    e.gcloud(&["compute", "firewall-rules", "update", "istio-multicluster-pods", "--priority=1000"]).await.ok();
    let p = e
        .gcloud(&["compute", "firewall-rules", "describe", "istio-multicluster-pods", "--format=value(priority)"])
        .await;
    assert_eq!(p.ok().stdout.trim(), "1000");
    // Several deletes in one command go through the batch endpoint.
    e.gcloud(&["compute", "firewall-rules", "delete", "istio-multicluster-pods", "cluster-1-other", "--quiet"])
        .await
        .ok();
    assert!(e.sim.log().iter().any(|l| l.path == "/batch/compute/v1" && l.status == 200));
    let left = e.gcloud(&["compute", "firewall-rules", "list", "--format=value(name)"]).await;
    assert_eq!(left.ok().stdout.trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_instances_and_control_plane_updates() {
    let e = Env::default().await;
    let cidrs = e.gcloud(&["container", "clusters", "list", "--format=value(clusterIpv4Cidr)"]).await;
    let mut cidrs: Vec<String> = cidrs.ok().stdout.lines().map(String::from).collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.0.0.0/14", "10.4.0.0/14"]);
    let tags = e.gcloud(&["compute", "instances", "list", "--format=value(tags.items.[0])"]).await;
    let tags: std::collections::BTreeSet<String> = tags.ok().stdout.lines().map(String::from).collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.iter().all(|t| t.starts_with("gke-cluster-") && t.ends_with("-node")));
    let pe = e
        .gcloud(&[
            "container",
            "clusters",
            "describe",
            "cluster-1",
            "--zone",
            "us-central1-a",
            "--format",
            "value(privateClusterConfig.privateEndpoint)",
        ])
        .await;
    let access = e.sim.clusters.iter().find(|c| c.name == "cluster-1").unwrap();
    assert_eq!(pe.ok().stdout.trim(), access.private_endpoint.clone().unwrap());
    assert!(pe.stdout.starts_with("127.0.0.2:"));

    e.gcloud(&[
        "container",
        "clusters",
        "update",
        "cluster-1",
        "--zone",
        "us-central1-a",
        "--enable-master-authorized-networks",
        "--master-authorized-networks",
        "10.4.0.0/14,192.168.0.0/24",
    ])
    .await
    .ok();
    e.gcloud(&[
        "container",
        "clusters",
        "update",
        "cluster-1",
        "--zone",
        "us-central1-a",
        "--enable-master-global-access",
    ])
    .await
    .ok();
    let d = Env::json(
        e.gcloud(&["container", "clusters", "describe", "cluster-1", "--zone", "us-central1-a", "--format=json"])
            .await
            .ok(),
    );
    let ip = &d["controlPlaneEndpointsConfig"]["ipEndpointsConfig"];
    let blocks: Vec<&str> = ip["authorizedNetworksConfig"]["cidrBlocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["cidrBlock"].as_str().unwrap())
        .collect();
    assert_eq!(blocks, ["10.4.0.0/14", "192.168.0.0/24"], "the list is replaced, not merged");
    assert_eq!(ip["globalAccess"], true);
    assert_eq!(d["masterAuthorizedNetworksConfig"]["cidrBlocks"], ip["authorizedNetworksConfig"]["cidrBlocks"]);
    assert_eq!(d["privateClusterConfig"]["masterGlobalAccessConfig"]["enabled"], true);
    // The PUT carried the shape gcloud 528 sends, and the operation was polled.
    let log = e.sim.log();
    assert!(log.iter().any(|l| l.method == "PUT" && l.path.ends_with("/locations/us-central1-a/clusters/cluster-1")));
    assert!(log.iter().any(|l| l.method == "GET" && l.path.contains("/locations/us-central1-a/operations/operation-")));
    let missing = e.gcloud(&["container", "clusters", "describe", "nope", "--zone", "us-central1-a"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn negs_memberships_and_multicluster_ingress() {
    let e = Env::default().await;
    e.gcloud(&[
        "compute",
        "network-endpoint-groups",
        "create",
        "neg-1",
        "--zone",
        "us-central1-a",
        "--network",
        "default",
        "--subnet",
        "default",
        "--network-endpoint-type",
        "GCE_VM_IP_PORT",
    ])
    .await
    .ok();
    let negs = Env::json(e.gcloud(&["compute", "network-endpoint-groups", "list", "--format=json"]).await.ok());
    assert_eq!(negs[0]["name"], "neg-1");
    assert!(negs[0]["subnetwork"].as_str().unwrap().ends_with("/regions/us-central1/subnetworks/default"));

    e.gcloud(&[
        "container",
        "fleet",
        "memberships",
        "register",
        "cluster-1",
        "--gke-cluster",
        "us-central1-a/cluster-1",
        "--enable-workload-identity",
    ])
    .await
    .ok();
    let again = e
        .gcloud(&[
            "container",
            "fleet",
            "memberships",
            "register",
            "cluster-1",
            "--gke-cluster",
            "us-central1-a/cluster-1",
            "--enable-workload-identity",
        ])
        .await;
    assert!(again.ok().stderr.contains("already registered"), "{}", again.stderr);
    let members = Env::json(e.gcloud(&["container", "fleet", "memberships", "list", "--format=json"]).await.ok());
    assert_eq!(members[0]["name"], "projects/meshform-demo/locations/us-central1/memberships/cluster-1");
    assert!(
        members[0]["authority"]["issuer"].as_str().unwrap().ends_with("/locations/us-central1-a/clusters/cluster-1")
    );

    // §4.12 as listed: gcloud resolves a bare membership id to location `global`, which does not
    // match the regional membership of step 11; the real API refuses it, and so does the simulator.
    let bare = e.gcloud(&["container", "fleet", "ingress", "enable", "--config-membership=cluster-1"]).await;
    assert_ne!(bare.code, 0);
    assert!(
        bare.stderr
            .contains("configMembership projects/meshform-demo/locations/global/memberships/cluster-1 does not exist"),
        "{}",
        bare.stderr
    );
    // With the membership's location (or its full name) it succeeds and waits until the feature is OK.
    e.gcloud(&["container", "fleet", "ingress", "enable", "--config-membership=cluster-1", "--location=us-central1"])
        .await
        .ok();
    let f = Env::json(e.gcloud(&["container", "fleet", "ingress", "describe", "--format=json"]).await.ok());
    assert_eq!(
        f["spec"]["multiclusteringress"]["configMembership"],
        "projects/meshform-demo/locations/us-central1/memberships/cluster-1"
    );
    assert_eq!(f["state"]["state"]["code"], "OK");
    e.gcloud(&["container", "fleet", "memberships", "delete", "cluster-1", "--location", "us-central1", "--quiet"])
        .await
        .ok();
    let members = e.gcloud(&["container", "fleet", "memberships", "list", "--format=value(name)"]).await;
    assert_eq!(members.ok().stdout.trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_injected_and_gcloud_retries_where_it_does() {
    // Seed 4: faults fall where gcloud retries them (it does not retry every 503 of a list).
    let e = Env::start(SimOptions { fault_rate: 0.3, seed: 4, ..SimOptions::default() }).await;
    for _ in 0..3 {
        let cidrs = e.gcloud(&["container", "clusters", "list", "--format=value(clusterIpv4Cidr)"]).await;
        assert_eq!(cidrs.ok().stdout.lines().count(), 2);
    }
    let log = e.sim.log();
    let injected: Vec<u16> = log.iter().filter(|l| l.injected).map(|l| l.status).collect();
    assert!(!injected.is_empty(), "no faults were injected: {log:?}");
    assert!(injected.iter().all(|s| *s == 429 || *s == 503));
    // The same seed gives the same sequence of faults.
    let again = Env::start(SimOptions { fault_rate: 0.3, seed: 4, ..SimOptions::default() }).await;
    for _ in 0..3 {
        again.gcloud(&["container", "clusters", "list", "--format=value(clusterIpv4Cidr)"]).await.ok();
    }
    let statuses = |l: Vec<meshform_sim::LogEntry>| l.iter().map(|x| x.status).collect::<Vec<_>>();
    assert_eq!(statuses(again.sim.log()), statuses(log));
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_take_the_configured_number_of_polls() {
    let e = Env::start(SimOptions { lro_polls: 3, ..SimOptions::default() }).await;
    e.gcloud(&["compute", "firewall-rules", "create", "fw", "--allow=tcp:80", "--quiet"]).await.ok();
    let waits =
        e.sim.log().iter().filter(|l| l.path.contains("/global/operations/") && l.path.ends_with("/wait")).count();
    assert_eq!(waits, 3);
    e.gcloud(&[
        "container",
        "clusters",
        "update",
        "cluster-2",
        "--zone",
        "europe-west1-b",
        "--enable-master-global-access",
    ])
    .await
    .ok();
    let polls = e.sim.log().iter().filter(|l| l.path.contains("/locations/europe-west1-b/operations/")).count();
    assert_eq!(polls, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_get_401() {
    let e = Env::default().await;
    let o = e
        .gcloud_with(
            &["container", "clusters", "describe", "cluster-1", "--zone", "us-central1-a"],
            &[("CLOUDSDK_AUTH_ACCESS_TOKEN", "wrong-token")],
            &[],
        )
        .await;
    assert_ne!(o.code, 0);
    assert!(e.sim.log().iter().any(|l| l.status == 401), "{:?}", e.sim.log());
    assert!(e.sim.log().iter().all(|l| l.status == 401));
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_key_with_simulator_token_uri() {
    let e = Env::default().await;
    let key_pem = std::process::Command::new(meshform_sim::tools::need("openssl"))
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl runs");
    let key = serde_json::json!({
        "type": "service_account", "project_id": "meshform-demo", "private_key_id": "k1",
        "private_key": String::from_utf8(key_pem.stdout).unwrap(),
        "client_email": "deployer@meshform-demo.iam.gserviceaccount.com", "client_id": "1",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": e.sim.token_uri(),
    });
    let path = e.dir.path().join("key.json");
    std::fs::write(&path, key.to_string()).unwrap();
    e.gcloud_with(
        &["auth", "activate-service-account", "--key-file", path.to_str().unwrap()],
        &[],
        &["CLOUDSDK_AUTH_ACCESS_TOKEN"],
    )
    .await
    .ok();
    let o = e.gcloud_with(&["compute", "addresses", "list", "--global"], &[], &["CLOUDSDK_AUTH_ACCESS_TOKEN"]).await;
    o.ok();
    let log = e.sim.log();
    assert!(log.iter().any(|l| l.path == "/token" && l.status == 200), "{log:?}");
    assert!(log.iter().any(|l| l.path.ends_with("/global/addresses") && l.status == 200));
}

/// `gcloud secrets` against the simulator's Secret Manager: create, versions add (from a file,
/// with gcloud's CRC32C), access printing exactly the stored bytes, describe, and Google's
/// errors for a secret that exists already or not at all.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_create_add_access_describe_delete() {
    let e = Env::default().await;
    let created = e.gcloud(&["secrets", "create", "pipeline-token"]).await;
    assert!(created.ok().stderr.contains("Created secret [pipeline-token]."), "{}", created.stderr);
    // PEM text with a trailing newline and a non-ASCII character: printed byte for byte.
    let (v1, v2) = ("first\n", "-----BEGIN PRIVATE KEY-----\nMIIEvQ+/é==\n-----END PRIVATE KEY-----\n");
    for (n, data) in [(1, v1), (2, v2)] {
        let file = e.dir.path().join(format!("v{n}.pem"));
        std::fs::write(&file, data).unwrap();
        let add =
            e.gcloud(&["secrets", "versions", "add", "pipeline-token", "--data-file", file.to_str().unwrap()]).await;
        let said = format!("Created version [{n}] of the secret [pipeline-token].");
        assert!(add.ok().stderr.contains(&said), "{}", add.stderr);
    }
    let latest = e.gcloud(&["secrets", "versions", "access", "latest", "--secret", "pipeline-token"]).await;
    assert_eq!(latest.ok().stdout, v2);
    let first = e.gcloud(&["secrets", "versions", "access", "1", "--secret", "pipeline-token"]).await;
    assert_eq!(first.ok().stdout, v1);
    let d = Env::json(e.gcloud(&["secrets", "describe", "pipeline-token", "--format=json"]).await.ok());
    assert_eq!(d["name"], "projects/469301857210/secrets/pipeline-token");
    assert_eq!(d["replication"], serde_json::json!({"automatic": {}}));
    assert!(d["createTime"].as_str().is_some_and(|t| t.ends_with('Z')) && d["etag"].is_string(), "{d}");
    // What gcloud sent: the id in the query, the data with its checksum.
    let log = e.sim.log();
    let create =
        log.iter().find(|l| l.method == "POST" && l.path == "/secretmanager/v1/projects/meshform-demo/secrets");
    assert!(create.is_some_and(|l| l.query.contains("secretId=pipeline-token") && l.status == 200), "{log:?}");
    let adds = log.iter().filter(|l| l.path.ends_with("/secrets/pipeline-token:addVersion") && l.status == 200);
    assert_eq!(adds.count(), 2);

    let again = e.gcloud(&["secrets", "create", "pipeline-token"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("ALREADY_EXISTS") && again.stderr.contains("already exists"), "{}", again.stderr);
    let missing = e.gcloud(&["secrets", "describe", "nope"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("NOT_FOUND: Secret [projects/469301857210/secrets/nope] not found."),
        "{}",
        missing.stderr
    );
    let no_data = e.gcloud(&["secrets", "versions", "access", "latest", "--secret", "nope"]).await;
    assert_eq!(no_data.code, 1);
    assert!(no_data.stderr.contains("NOT_FOUND") && no_data.stdout.is_empty(), "{}", no_data.stderr);
    e.gcloud(&["secrets", "delete", "pipeline-token", "--quiet"]).await.ok();
    assert_eq!(e.gcloud(&["secrets", "describe", "pipeline-token"]).await.code, 1);
}

/// Versions of a seeded secret (the world's `[[secrets]]`): listed newest first; `latest` is the
/// newest whatever its state, so a disabled or destroyed newest version is FAILED_PRECONDITION
/// while an older one stays readable; a destroyed version cannot be enabled again.
#[tokio::test(flavor = "multi_thread")]
async fn secret_versions_of_a_seeded_world_disable_enable_destroy() {
    let world = meshform_sim::world::World::from_toml(
        "[[secrets]]\nname = \"api-token\"\nversions = [\"old-token\", \"new-token\"]\n\n[[secrets]]\nname = \"one\"\ndata = \"x\"\n",
    )
    .unwrap();
    let e = Env::start(SimOptions { world, ..SimOptions::default() }).await;
    let names = e.gcloud(&["secrets", "list", "--format=value(name)"]).await;
    assert_eq!(names.ok().stdout, "api-token\none\n");
    let access = |v: &'static str| {
        let e = &e;
        async move { e.gcloud(&["secrets", "versions", "access", v, "--secret", "api-token"]).await }
    };
    assert_eq!(access("latest").await.ok().stdout, "new-token");
    let list = Env::json(e.gcloud(&["secrets", "versions", "list", "api-token", "--format=json"]).await.ok());
    let states: Vec<(&str, &str)> =
        list.as_array().unwrap().iter().map(|v| (v["name"].as_str().unwrap(), v["state"].as_str().unwrap())).collect();
    let name = |n: u32| format!("projects/469301857210/secrets/api-token/versions/{n}");
    assert_eq!(states, [(name(2).as_str(), "ENABLED"), (name(1).as_str(), "ENABLED")]);

    e.gcloud(&["secrets", "versions", "disable", "2", "--secret", "api-token"]).await.ok();
    let disabled = access("latest").await;
    assert_eq!(disabled.code, 1);
    let said = format!("FAILED_PRECONDITION: Secret Version [{}] is in DISABLED state.", name(2));
    assert!(disabled.stderr.contains(&said), "{}", disabled.stderr);
    assert_eq!(access("1").await.ok().stdout, "old-token");
    e.gcloud(&["secrets", "versions", "enable", "2", "--secret", "api-token"]).await.ok();
    assert_eq!(access("latest").await.ok().stdout, "new-token");
    e.gcloud(&["secrets", "versions", "destroy", "1", "--secret", "api-token", "--quiet"]).await.ok();
    let destroyed = access("1").await;
    assert_eq!(destroyed.code, 1);
    assert!(destroyed.stderr.contains("is in DESTROYED state."), "{}", destroyed.stderr);
    let v1 = Env::json(
        e.gcloud(&["secrets", "versions", "describe", "1", "--secret", "api-token", "--format=json"]).await.ok(),
    );
    assert_eq!(v1["state"], "DESTROYED");
    assert!(v1["destroyTime"].is_string(), "{v1}");
    assert_eq!(e.gcloud(&["secrets", "versions", "enable", "1", "--secret", "api-token"]).await.code, 1);
    let unknown = access("3").await;
    assert!(unknown.code == 1 && unknown.stderr.contains("NOT_FOUND"), "{}", unknown.stderr);
}

/// The managed Cloud Service Mesh as gcloud 528 drives it (`fleet mesh enable`, `mesh update
/// --management automatic` through gkehub v2, `mesh describe`): the membership's control plane
/// goes PROVISIONING → ACTIVE after the configured reads, and its cluster then has the managed
/// control plane, which kubectl sees.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_mesh_enable_update_describe() {
    let e = Env::start(SimOptions { controller_polls: 2, ..SimOptions::default() }).await;
    for (c, at) in [("cluster-1", "us-central1-a"), ("cluster-2", "europe-west1-b")] {
        let gke = format!("{at}/{c}");
        e.gcloud(&[
            "container",
            "fleet",
            "memberships",
            "register",
            c,
            "--gke-cluster",
            &gke,
            "--enable-workload-identity",
        ])
        .await
        .ok();
    }
    // Before the fleet has the feature, a membership's spec is refused.
    let early = e
        .gcloud(&[
            "container",
            "fleet",
            "mesh",
            "update",
            "--management",
            "automatic",
            "--memberships",
            "cluster-1",
            "--location",
            "us-central1",
        ])
        .await;
    assert!(early.code != 0 && early.stderr.contains("FAILED_PRECONDITION"), "{}", early.stderr);
    e.gcloud(&["container", "fleet", "mesh", "enable"]).await.ok();
    e.gcloud(&[
        "container",
        "fleet",
        "mesh",
        "update",
        "--management",
        "automatic",
        "--memberships",
        "cluster-1",
        "--location",
        "us-central1",
    ])
    .await
    .ok();
    let key = |m: &str, l: &str| format!("projects/{}/locations/{l}/memberships/{m}", e.sim.world.project_number);
    let c1 = key("cluster-1", "us-central1");
    // gcloud's own read after the update was the first; one more read still provisions.
    let f = Env::json(e.gcloud(&["container", "fleet", "mesh", "describe", "--format=json"]).await.ok());
    assert_eq!(f["membershipSpecs"][&c1]["mesh"]["management"], "MANAGEMENT_AUTOMATIC", "{f}");
    assert_eq!(f["membershipStates"][&c1]["servicemesh"]["controlPlaneManagement"]["state"], "PROVISIONING", "{f}");
    let none = e.kubectl(0, &["get", "controlplanerevisions", "-n", "istio-system"]).await;
    assert_ne!(none.code, 0, "no managed control plane yet: {}", none.stdout);
    let f = Env::json(e.gcloud(&["container", "fleet", "mesh", "describe", "--format=json"]).await.ok());
    let cp = &f["membershipStates"][&c1]["servicemesh"]["controlPlaneManagement"];
    assert_eq!(cp["state"], "ACTIVE", "{f}");
    assert_eq!(cp["implementation"], "TRAFFIC_DIRECTOR");
    assert_eq!(cp["details"][0]["code"], "REVISION_READY");
    assert!(f["membershipSpecs"].get(key("cluster-2", "europe-west1")).is_none(), "only cluster-1 was updated");
    // The cluster now runs the managed control plane.
    assert_runs_the_managed_control_plane(&e, 0).await;
    // Manual management takes the managed control plane away again.
    e.gcloud(&[
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
    ])
    .await
    .ok();
    let f = Env::json(e.gcloud(&["container", "fleet", "mesh", "describe", "--format=json"]).await.ok());
    assert_eq!(f["membershipStates"][&c1]["servicemesh"]["controlPlaneManagement"]["state"], "DISABLED", "{f}");
    let gone = e.kubectl(0, &["get", "controlplanerevision", "asm-managed", "-n", "istio-system"]).await;
    assert_ne!(gone.code, 0, "{}", gone.stdout);
}

/// Cluster `i` has the managed control plane: the Reconciled `asm-managed` ControlPlaneRevision
/// and the Service of its revision, as kubectl sees them.
async fn assert_runs_the_managed_control_plane(e: &Env, i: usize) {
    let cpr = e.kubectl(i, &["get", "controlplanerevision", "asm-managed", "-n", "istio-system", "-o", "json"]).await;
    let cpr: serde_json::Value = serde_json::from_str(&cpr.ok().stdout).unwrap();
    let reconciled =
        cpr["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Reconciled").unwrap();
    assert_eq!(reconciled["status"], "True");
    let rev =
        e.kubectl(i, &["get", "services", "-n", "istio-system", "-l", "istio.io/rev=asm-managed", "-o", "name"]).await;
    assert_eq!(rev.ok().stdout.trim(), "service/istiod-asm-managed");
}

/// The world of testdata/worlds/shared-vpc.toml: a host project and two service projects.
fn shared_vpc() -> meshform_sim::world::World {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/worlds/shared-vpc.toml");
    meshform_sim::world::World::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The guide's "All project clusters" and "Specific clusters" commands, `--project` on each,
/// answer per project of a shared-VPC world; labels change as `clusters update` sends them; a
/// project the world does not hold is refused as Google refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn shared_vpc_world_answers_per_project() {
    let e = Env::start(SimOptions { world: shared_vpc(), ..SimOptions::default() }).await;
    let lines = |o: &common::Out| o.stdout.lines().map(str::to_string).collect::<Vec<_>>();
    let list = |project: &'static str, filter: &'static str| {
        let e = &e;
        async move {
            let p = format!("--project={project}");
            let mut args = vec!["container", "clusters", "list", p.as_str(), "--format=value(name,location)"];
            let f = format!("--filter={filter}");
            if !filter.is_empty() {
                args.push(&f);
            }
            lines(e.gcloud(&args).await.ok())
        }
    };
    assert_eq!(list("svc-alpha", "").await, ["alpha-1\tus-central1-a", "alpha-2\tus-central1-c"]);
    assert_eq!(list("svc-beta", "resourceLabels.mesh=prod").await, ["beta-1\teurope-west1-b", "beta-2\tus-east1"]);
    assert!(list("mesh-host", "").await.is_empty(), "the host project holds the network, no cluster");
    // "Specific clusters": the pod range and the network of one, and its nodes' tag.
    let d = e
        .gcloud(&[
            "container",
            "clusters",
            "describe",
            "alpha-1",
            "--project=svc-alpha",
            "--zone=us-central1-a",
            "--format=value(clusterIpv4Cidr,networkConfig.network,networkConfig.subnetwork)",
        ])
        .await;
    assert_eq!(
        d.ok().stdout.trim(),
        "10.0.0.0/14\tprojects/mesh-host/global/networks/shared-net\tprojects/mesh-host/regions/us-central1/subnetworks/mesh-us-central1"
    );
    let tags = e
        .gcloud(&[
            "compute",
            "instances",
            "list",
            "--project=svc-alpha",
            "--filter=name~gke-alpha-1",
            "--format=value(tags.items[0])",
        ])
        .await;
    let tags = lines(tags.ok());
    assert_eq!(tags.len(), 2, "two nodes: {tags:?}");
    assert!(tags.iter().all(|t| t.starts_with("gke-alpha-1-") && t.ends_with("-node")), "{tags:?}");
    let none = e.gcloud(&["compute", "instances", "list", "--project=mesh-host", "--format=value(name)"]).await;
    assert_eq!(none.ok().stdout.trim(), "", "no node lives in the host project");
    let subnet = e
        .gcloud(&[
            "compute",
            "networks",
            "subnets",
            "describe",
            "mesh-us-central1",
            "--region=us-central1",
            "--project=mesh-host",
            "--format=value(ipCidrRange,network)",
        ])
        .await;
    assert!(subnet.ok().stdout.starts_with("10.128.0.0/20\thttps://"), "{}", subnet.stdout);
    assert!(subnet.stdout.trim().ends_with("/projects/mesh-host/global/networks/shared-net"), "{}", subnet.stdout);
    // Labels: a cluster that starts matching, then stops.
    let update = |flag: &'static str| {
        let e = &e;
        async move {
            let args =
                ["container", "clusters", "update", "alpha-2", "--project=svc-alpha", "--zone=us-central1-c", flag];
            e.gcloud(&args).await.ok();
        }
    };
    update("--update-labels=mesh=prod").await;
    assert_eq!(
        list("svc-alpha", "resourceLabels.mesh=prod").await,
        ["alpha-1\tus-central1-a", "alpha-2\tus-central1-c"]
    );
    update("--remove-labels=mesh").await;
    assert_eq!(list("svc-alpha", "resourceLabels.mesh=prod").await, ["alpha-1\tus-central1-a"]);
    // gcloud 528's --update-labels sends only the labels given, and setResourceLabels replaces the
    // set: alpha-2's `team` went with the first update.
    assert_eq!(list("svc-alpha", "resourceLabels.team=alpha").await, ["alpha-1\tus-central1-a"]);
    refuses_projects_it_does_not_hold(&e).await;
}

/// A project the world does not hold is refused as Google refuses it.
async fn refuses_projects_it_does_not_hold(e: &Env) {
    let denied = e.gcloud(&["container", "clusters", "list", "--project=not-ours"]).await;
    assert_eq!(denied.code, 1);
    assert!(denied.stderr.contains("Permission denied on resource project not-ours"), "{}", denied.stderr);
    let missing = e.gcloud(&["compute", "instances", "list", "--project=not-ours"]).await;
    // gcloud lists what it could and warns, exiting 0.
    assert!(missing.stderr.contains("The resource 'projects/not-ours' was not found"), "{}", missing.stderr);
    assert_eq!(missing.stdout.trim(), "");
}
