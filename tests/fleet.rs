//! Fleet scale, by counting calls (never by timing): the ASM guide's plan on a 10-cluster full
//! mesh (`World::fleet(10)`: private zonal clusters in 10 regions, one pre-existing authorized
//! network each) applies, and then a no-change plan and a drift make a fixed number of Google
//! calls per method, whatever the number of clusters, and only list calls to each cluster's API
//! server (a handful per cluster: one per kind and namespace), read from the simulator's request
//! logs. Also: each cluster authorizes the other clusters' pod ranges, merged, beside what it had;
//! and a plan that would exceed GKE's 50 authorized networks fails at plan, naming the cluster,
//! changing nothing.
//!
//! Needs gcloud and kubectl on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use std::collections::BTreeMap;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

async fn mf(c: &Cloud, args: &[&str]) -> (i32, String) {
    let mut a = args.to_vec();
    a.extend(["plans/asm-multicluster.toml", "--var-file", "clusters.toml"]);
    let o = c.mf(&a).await;
    (code(&o), text(&o))
}

/// Google calls since the log was cleared, by `METHOD collection` (ids dropped), token
/// exchanges left out.
fn google_calls(c: &Cloud) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in c.sim.log().into_iter().filter(|e| !e.path.starts_with("/token") && !e.path.starts_with("/__sim")) {
        let segs: Vec<&str> = e.path.trim_matches('/').split('/').collect();
        // projects/P/[global|aggregated|zones/Z|locations/L]/COLLECTION[/ID]
        let collection = segs.iter().rev().find(|s| {
            ["clusters", "firewalls", "instances", "memberships", "features", "operations", "addresses"]
                .contains(&s.split(':').next().unwrap_or(s))
        });
        let named = collection.is_some_and(|c| segs.last() != Some(c));
        let key = format!("{} {}{}", e.method, collection.unwrap_or(&"?"), if named { "/NAME" } else { "" });
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Each cluster's API server requests since `clear_kube`, as (method, path with query).
fn kube_calls(c: &Cloud) -> Vec<Vec<(String, String)>> {
    c.sim.kube.iter().map(|k| k.log.lock().unwrap().iter().map(|(m, p, ..)| (m.clone(), p.clone())).collect()).collect()
}

fn clear(c: &Cloud) {
    c.sim.clear_log();
    for k in &c.sim.kube {
        k.log.lock().unwrap().clear();
    }
}

/// What a request to an API server is: `discovery`, `list` (of a collection) or `other`.
fn classify(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api"] | ["apis"] | ["api", _] | ["apis", _, _] | ["openapi", ..] if method == "GET" => return "discovery",
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return "other",
    };
    match rest {
        ["namespaces", _, _] | [_] if method == "GET" => "list",
        _ => "other",
    }
}

/// Asserts the step's calls: Google's within `google` per method, and every cluster sent only
/// lists and discovery, at most `lists` lists each.
fn assert_calls(c: &Cloud, step: &str, google: &[(&str, usize)], lists: usize) {
    let calls = google_calls(c);
    for (method, n) in &calls {
        let bound = google.iter().find(|(m, _)| m == method).map_or(0, |(_, b)| *b);
        assert!(*n <= bound, "{step}: {n} × `{method}` (at most {bound}); every Google call: {calls:?}");
    }
    for (i, log) in kube_calls(c).iter().enumerate() {
        let other: Vec<_> = log.iter().filter(|(m, p)| classify(m, p) == "other").collect();
        assert!(other.is_empty(), "{step}: cluster {i} was sent more than lists: {other:?}");
        let n = log.iter().filter(|(m, p)| classify(m, p) == "list").count();
        assert!(n <= lists, "{step}: cluster {i} was sent {n} lists (at most {lists}): {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_no_change_plan_and_drift_of_ten_clusters_make_a_fixed_number_of_calls() {
    let w = World::fleet(10);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let (rc, t) = mf(&c, &["apply", "--auto-approve"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_eq!(t.matches("ok   remote secret authenticates").count(), 90, "{t}");

    // Each cluster authorizes the other nine clusters' pod ranges, merged (c001..c010 hold
    // 10.0.0.0/17 … 10.4.128.0/17), beside the network it had.
    let d = c.describe(&["container", "clusters", "describe", "c001", "--location", "us-central1-a"]).await;
    let blocks = common::authorized_networks(&d);
    assert_eq!(blocks, ["10.0.128.0/17", "10.1.0.0/16", "10.2.0.0/15", "10.4.0.0/16", "203.0.113.0/24"]);

    // Google: one cluster list, one aggregated instances list and one firewall list for the
    // whole mesh. Clusters: lists only, one per kind and namespace read (Secrets and Pods of
    // istio-system, Namespaces, and the sample's Services, Deployments and ServiceAccounts).
    let google = [("GET clusters", 1), ("GET instances", 1), ("GET firewalls", 1)];
    clear(&c);
    let (rc, t) = mf(&c, &["plan", "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_calls(&c, "plan", &google, 6);

    // Drift: the same reads once for both comparisons, plus the 90 checks, each a list of
    // Services in its source cluster (9 per cluster), and the 10 discovery checks: each istiod's
    // EndpointSlices of helloworld in every cluster (10 per cluster) and one list of the
    // sample's Pods per cluster for their versions.
    clear(&c);
    let (rc, t) = mf(&c, &["drift"]).await;
    assert_eq!(rc, 0, "{t}");
    assert_calls(&c, "drift", &google, 6 + 9 + 10 + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_over_gkes_authorized_network_limit_fails_at_plan_naming_the_cluster() {
    // c002 already authorizes 48 networks: the two others' pod ranges (10.0.0.0/17 and
    // 10.1.0.0/17, not adjacent) make 50, the limit; c003 authorizes 50, and the two others'
    // (10.0.0.0/17 and 10.0.128.0/17, merged into 10.0.0.0/16) make 51.
    let mut w = World::fleet(3);
    w.clusters[1].authorized_networks = (0..48).map(|i| format!("192.168.{i}.0/24")).collect();
    w.clusters[2].authorized_networks = (0..50).map(|i| format!("192.168.{i}.0/24")).collect();
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    clear(&c);
    let (rc, t) = mf(&c, &["plan"]).await;
    assert_eq!(rc, 1, "{t}");
    assert!(
        t.contains("cluster `c003` (us-east1-a) would have 51 master authorized networks")
            && t.contains("GKE allows at most 50")
            && t.contains("cidrmerge"),
        "{t}"
    );
    assert!(!t.contains("`c002`"), "c002 stays within the limit: {t}");
    let changes: Vec<_> = c.sim.log().into_iter().filter(|e| e.method != "GET" && e.path != "/token").collect();
    assert!(changes.is_empty(), "a plan changes nothing: {changes:?}");
    // A provider setting raises the limit for clusters Google allows more.
    let plan = c.dir.path().join("plans/asm-multicluster.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("[providers.gcp]\n", "[providers.gcp]\nmax_authorized_networks = 51\n"))
        .unwrap();
    let (rc, t) = mf(&c, &["plan"]).await;
    assert_eq!(rc, 0, "{t}");
}
