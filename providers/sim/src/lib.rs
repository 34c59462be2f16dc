//! The meshform simulator: Google Cloud's compute, container, gkehub, serviceusage and Secret
//! Manager REST APIs, Cloud Storage's JSON API, the fleet's Connect Gateway (and, per cluster, a
//! Kubernetes API server on its IP endpoints and its DNS-based endpoint) in one process on
//! loopback, faithful enough that the real `gcloud` and `kubectl` work against it. It is the
//! default target of `meshform sim` and `meshform demo`, and the target of the integration tests.
//!
//! Key types: [`Sim`] (a running simulator and its handle for tests), [`SimOptions`] (faults,
//! latency, operation polls, and [`SimClock`]: whether anything happens by time),
//! [`world::World`] (what is seeded). The one design decision: every
//! resource is kept as the JSON the API returns, so shapes stay exactly as documented.

pub mod buckets;
pub mod certs;
pub mod compute;
pub mod container;
pub mod errors;
pub mod faults;
pub mod files;
pub mod filter;
pub mod gateway;
pub mod gke;
pub mod hashes;
pub mod hub;
pub mod kube;
pub mod secrets;
pub mod server;
pub mod servicemesh;
pub mod state;
pub mod storage;
pub mod store;
pub mod support;
pub mod tools;
pub mod world;

pub use server::Sim;
pub use state::{LogEntry, SimClock, SimOptions};

#[cfg(test)]
mod layering {
    //! The module dependency order of ARCHITECTURE.md, checked on the source: a module names
    //! (`crate::x`, or `super::x` inside `kube/`) only modules of lower layers.

    /// The crate's modules, by layer (a module may use only those of earlier layers).
    const CRATE: &[&[&str]] = &[
        &["world", "certs", "errors", "filter", "faults", "support", "tools", "hashes"],
        &["buckets"],
        &["store"],
        &["state"],
        &["compute", "container", "hub", "storage", "secrets", "kube"],
        &["servicemesh", "gke", "gateway"],
        &["server"],
        &["files"],
    ];
    /// `kube/`'s modules, by layer (`mod.rs` builds on all of them).
    const KUBE: &[&[&str]] = &[
        &["status", "resources", "proto", "ssa"],
        &["selectors", "state", "wire"],
        &["rbac"],
        &["defaults", "controllers"],
        &["objects"],
        &["istio"],
        &["lists", "patch", "discovery"],
        &["http"],
    ];

    fn layer(layers: &[&[&str]], m: &str) -> Option<usize> {
        layers.iter().position(|l| l.contains(&m))
    }

    /// The modules `text` names with `prefix` (`crate::` or `super::`).
    fn named<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.match_indices(prefix)
            .map(|(i, _)| {
                let rest = &text[i + prefix.len()..];
                &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
            })
            .filter(|m| !m.is_empty())
            .collect()
    }

    fn check(dir: &str, layers: &[&[&str]], prefix: &str, crate_layer: Option<usize>, bad: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            if path.extension().is_none_or(|e| e != "rs") || stem == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // `kube/mod.rs` builds on every module of `kube/`.
            let own = if stem == "mod" {
                layers.len()
            } else {
                layer(layers, stem).unwrap_or_else(|| panic!("{stem} is in no layer of the order"))
            };
            for m in named(&text, prefix) {
                if layer(layers, m).is_none_or(|l| l >= own) {
                    bad.push(format!("{}: {prefix}{m}", path.display()));
                }
            }
            if let Some(cl) = crate_layer {
                for m in named(&text, "crate::") {
                    if layer(CRATE, m).is_none_or(|l| l >= cl) {
                        bad.push(format!("{}: crate::{m}", path.display()));
                    }
                }
            }
        }
    }

    #[test]
    fn modules_use_only_lower_layers() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut bad = Vec::new();
        check(src, CRATE, "crate::", None, &mut bad);
        check(&format!("{src}/kube"), KUBE, "super::", layer(CRATE, "kube"), &mut bad);
        assert!(bad.is_empty(), "a module uses one of its layer or above:\n{}", bad.join("\n"));
    }
}
