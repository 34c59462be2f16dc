//! The `gke_clusters` data source's fleet form against the simulator's shared-VPC world: the
//! clusters registered to a fleet host project's fleet, wherever their own project is, filtered
//! as the project form is; and the fleet membership a registered cluster's lookup reports (with
//! the project's number for the Connect Gateway).

use std::collections::HashMap;

use meshform_engine::provider::{CallContext, Provider};
use meshform_engine::value::{Map, Value};
use meshform_gcp::GcpProvider;
use meshform_sim::world::World;
use meshform_sim::{Sim, SimOptions};

fn shared_vpc(fleet: &[&str]) -> World {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/worlds/shared-vpc.toml");
    let mut w = World::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in &mut w.clusters {
        c.fleet = fleet.contains(&c.name.as_str());
    }
    w
}

fn names(m: &Map) -> Vec<String> {
    let Some(Value::List(names)) = m.get("names") else { panic!("no names: {m:?}") };
    names.iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_members_are_found_across_projects_and_filtered() {
    let world = shared_vpc(&["alpha-1", "alpha-2", "beta-stage"]);
    let sim = Sim::start(SimOptions { world, ..SimOptions::default() }).await.unwrap();
    let p = GcpProvider::with_env(HashMap::from([
        ("MESHFORM_GCP_ENDPOINT".to_string(), sim.base_url()),
        ("MESHFORM_GCP_ACCESS_TOKEN".to_string(), sim.token.clone()),
        ("MESHFORM_GCP_PROJECT".to_string(), sim.world.project.clone()),
    ]));
    p.configure(&Map::new()).await.unwrap();
    let read = |pairs: Vec<(&str, Value)>| {
        let config: Map = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let p = &p;
        async move { p.read_data("gke_clusters", &config, &CallContext::default()).await.unwrap().attrs }
    };
    let fleet = read(vec![("fleet_project", Value::str("mesh-host"))]).await;
    assert_eq!(names(&fleet), ["alpha-1", "alpha-2", "beta-stage"]);
    let Some(Value::Map(clusters)) = fleet.get("clusters") else { panic!("{fleet:?}") };
    let beta = clusters["beta-stage"].as_map().unwrap();
    assert_eq!(beta["project"], Value::str("svc-beta"));
    let prod = vec![
        ("fleet_project", Value::str("mesh-host")),
        ("labels", Value::Map(Map::from([("mesh".to_string(), Value::str("prod"))]))),
    ];
    assert_eq!(names(&read(prod).await), ["alpha-1"]);
    // The project form finds the unregistered ones too.
    let projects = vec![("projects", Value::List(vec![Value::str("svc-alpha"), Value::str("svc-beta")]))];
    assert_eq!(names(&read(projects).await).len(), 5);

    // A registered cluster's lookup reports its membership as GKE names it; for the Connect
    // Gateway, with the fleet project's number (from Resource Manager).
    let lookup = |name: &str, project: &str, connect: Option<&str>| {
        let location = sim.world.clusters.iter().find(|c| c.name == name).unwrap().location.clone();
        let mut config = Map::from([
            ("project".to_string(), Value::str(project)),
            ("location".to_string(), Value::str(location)),
            ("name".to_string(), Value::str(name)),
        ]);
        if let Some(c) = connect {
            config.insert("connect".to_string(), Value::str(c));
        }
        let p = &p;
        async move { p.read_data("gke_cluster", &config, &CallContext::default()).await.unwrap().attrs }
    };
    let region =
        meshform_sim::world::region_of(&sim.world.clusters.iter().find(|c| c.name == "alpha-1").unwrap().location);
    let reported = lookup("alpha-1", "svc-alpha", None).await;
    assert_eq!(
        reported["fleet_membership"],
        Value::str(format!("projects/mesh-host/locations/{region}/memberships/alpha-1"))
    );
    let before = sim.log().len();
    let gateway = lookup("alpha-1", "svc-alpha", Some("connect-gateway")).await;
    assert_eq!(
        gateway["fleet_membership"],
        Value::str(format!("projects/310552077601/locations/{region}/memberships/alpha-1"))
    );
    let asked: Vec<String> = sim.log()[before..].iter().map(|l| l.path.clone()).collect();
    assert!(asked.contains(&"/cloudresourcemanager/v1/projects/mesh-host".to_string()), "{asked:?}");
    assert_eq!(lookup("beta-1", "svc-beta", None).await["fleet_membership"], Value::str(""));
    sim.stop().await;
}
