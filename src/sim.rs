//! `meshform sim`: runs the simulator in the foreground until SIGINT or SIGTERM.

use std::path::Path;
use std::time::Duration;

use meshform_sim::world::World;
use meshform_sim::{Sim, SimClock, SimOptions, files};

use crate::exit::OK;

/// The simulator's settings from the command line.
pub struct Options {
    /// Milliseconds added to every request.
    pub latency: u64,
    /// Fraction of requests answered with 429 or 503.
    pub fault_rate: f64,
    /// Polls an operation takes.
    pub lro_polls: u32,
    /// Seed of the fault sequence.
    pub seed: u64,
    /// Operations also finish this long after they start, and the simulator's other timed
    /// behaviour runs by the wall clock (None: nothing happens by time).
    pub lro_time: Option<Duration>,
}

/// Starts the simulator, writes its files, prints one ready line and waits for a signal.
pub async fn run(fail: &dyn Fn(&str) -> u8, dir: &Path, world: Option<&Path>, o: Options) -> u8 {
    let Options { latency, fault_rate, lro_polls, seed, lro_time } = o;
    crate::signals::handled_by_command();
    if !(0.0..=1.0).contains(&fault_rate) {
        return fail("--fault-rate must be between 0 and 1");
    }
    let world = match world {
        None => World::default(),
        Some(p) => match std::fs::read_to_string(p).map_err(|e| e.to_string()).and_then(|t| World::from_toml(&t)) {
            Ok(w) => w,
            Err(e) => return fail(&format!("world file {}: {e}", p.display())),
        },
    };
    let opts = SimOptions {
        world,
        latency: Duration::from_millis(latency),
        fault_rate,
        lro_polls,
        seed,
        clock: lro_time.map_or(SimClock::Pinned, |lro| SimClock::Wall { lro }),
        ..SimOptions::default()
    };
    let sim = match Sim::start(opts).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let dir = match std::path::absolute(dir) {
        Ok(d) => d,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = files::write_all(&sim, &dir) {
        return fail(&format!("cannot write {}: {e}", dir.display()));
    }
    println!(
        "meshform sim ready: Google Cloud APIs at {}, {} clusters; run `source {}/env.sh`",
        sim.base_url(),
        sim.clusters.len(),
        dir.display()
    );
    wait_for_signal().await;
    sim.stop().await;
    OK
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
