//! The meshform simulator: Google Cloud's compute, container, gkehub and serviceusage REST APIs
//! (and, per cluster, a Kubernetes API server) in one process on loopback, faithful enough that
//! the real `gcloud` and `kubectl` work against it. It is the default target of `meshform sim` and
//! `meshform demo`, and the target of the integration tests.
//!
//! Key types: [`Sim`] (a running simulator and its handle for tests), [`SimOptions`] (faults,
//! latency, operation polls), [`world::World`] (what is seeded). The one design decision: every
//! resource is kept as the JSON the API returns, so shapes stay exactly as documented.

pub mod certs;
pub mod compute;
pub mod container;
pub mod errors;
pub mod faults;
pub mod files;
pub mod filter;
pub mod hub;
pub mod kube;
pub mod server;
pub mod state;
pub mod store;
pub mod support;
pub mod world;

pub use server::Sim;
pub use state::{LogEntry, SimClock, SimOptions};
