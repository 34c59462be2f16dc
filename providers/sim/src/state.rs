//! What every handler shares: the options ([`SimOptions`]), the state ([`Shared`]: the store,
//! accepted tokens, the request log, fault draws) and the request log's entries. A leaf of the
//! handler layer: it imports no handler module and not the server; `server` builds a `Shared`
//! and the handlers (`compute`, `container`, `hub`, `kube`) read it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use serde::Serialize;

use crate::faults::Faults;
use crate::store::Store;
use crate::world::World;

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// What to seed.
    pub world: World,
    /// Delay added to every API request.
    pub latency: Duration,
    /// Fraction of API requests answered with 429 or 503 (of both the Google APIs and the
    /// clusters' API servers). Which ones is drawn per request identity (see [`crate::faults`]),
    /// so that a seed reproduces each request's outcome however requests interleave.
    pub fault_rate: f64,
    /// Polls an operation takes to finish (0: done at once).
    pub lro_polls: u32,
    /// Reads of a controller-driven status (a fleet membership's service mesh) that still report
    /// it in progress before it turns ACTIVE / healthy.
    pub controller_polls: u32,
    /// Seed of the fault draws.
    pub seed: u64,
    /// Seconds an injected 429 (and a cluster's injected 503) asks the client to wait, in its
    /// `Retry-After` header (and a Kubernetes Status's `retryAfterSeconds`). 1 by default, as
    /// for `meshform sim`; tests set 0 so that no retry waits on it.
    pub retry_after_secs: u32,
    /// Whether anything happens by the wall clock: the one setting of every time-driven
    /// behaviour (see [`SimClock`]). Pinned by default, as tests want it.
    pub clock: SimClock,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            world: World::default(),
            latency: Duration::ZERO,
            fault_rate: 0.0,
            lro_polls: 1,
            controller_polls: 2,
            seed: 1,
            retry_after_secs: 1,
            clock: SimClock::Pinned,
        }
    }
}

/// Whether anything in the simulator happens by the wall clock rather than by requests.
///
/// Simulated latency (`SimOptions::latency`) is not governed by it, nor the end of a watch
/// after the `timeoutSeconds` its client asked for (the client's clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimClock {
    /// Nothing happens by time, so a run is decided by its requests alone (what tests use): an
    /// operation finishes after `lro_polls` polls, and a deleted namespace is finalized (its
    /// content deleted, then it) by the request that deletes it, whose reply still shows it
    /// Terminating.
    #[default]
    Pinned,
    /// Time passes as for the real services (`meshform sim`): an operation also finishes `lro`
    /// after it starts, polled or not (as GKE's do: one whose client was killed still ends), and
    /// a deleted namespace stays Terminating for [`NAMESPACE_FINALIZE`] before the namespace
    /// controller finalizes it.
    Wall {
        /// How long an operation takes at most.
        lro: Duration,
    },
}

/// How long a deleted namespace stays Terminating under [`SimClock::Wall`].
pub const NAMESPACE_FINALIZE: Duration = Duration::from_millis(150);

impl SimClock {
    /// The time after which an operation is done whether polled or not (none when pinned).
    pub fn lro_time(self) -> Option<Duration> {
        match self {
            SimClock::Pinned => None,
            SimClock::Wall { lro } => Some(lro),
        }
    }

    /// How long a deleted namespace stays Terminating (none when pinned: it is finalized at once).
    pub fn namespace_finalize(self) -> Option<Duration> {
        match self {
            SimClock::Pinned => None,
            SimClock::Wall { .. } => Some(NAMESPACE_FINALIZE),
        }
    }
}

/// One request as the simulator saw it.
#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Status returned.
    pub status: u16,
    /// The status was an injected fault.
    pub injected: bool,
}

/// State shared by every handler.
pub struct Shared {
    /// The resources of the world's project (the host project of its network).
    pub store: Mutex<Store>,
    /// The resources of each service project, by project id (see [`Shared::store_of`]).
    pub service_stores: std::collections::BTreeMap<String, Mutex<Store>>,
    /// Accepted bearer tokens (the clusters' API servers accept them too, as GKE accepts Google
    /// access tokens).
    pub tokens: Arc<Mutex<HashSet<String>>>,
    /// Every request.
    pub log: Mutex<Vec<LogEntry>>,
    /// Options.
    pub opts: SimOptions,
    /// The next this many changes (POST/PUT/PATCH/DELETE) are carried out and answered 503, as
    /// when a reply is lost: a test sets it to exercise a client's retry of a change that was made.
    pub lose_replies: std::sync::atomic::AtomicU32,
    /// Injected faults (per request identity).
    pub faults: Faults,
    /// The API router itself (the batch endpoint dispatches its parts through it).
    pub router: OnceLock<Router>,
    /// What GKE's mesh controller does in a membership's cluster when its managed control
    /// plane is ACTIVE (`location`, `membership`); set by the server, which has the clusters.
    #[allow(clippy::type_complexity)]
    pub on_mesh_active: OnceLock<Box<dyn Fn(&Store, &str, &str) + Send + Sync>>,
}

impl Shared {
    /// The store of project `p` (its id or number): the world's project or one of its service
    /// projects; `None` for a project the world does not hold.
    pub fn store_of(&self, p: &str) -> Option<&Mutex<Store>> {
        let w = &self.opts.world;
        if p == w.project || p == w.project_number {
            return Some(&self.store);
        }
        let id = &w.service_projects.iter().find(|s| s.id == p || s.number == p)?.id;
        self.service_stores.get(id)
    }
}
