//! Injected faults, drawn per request identity: whether a request fails (and how) is a hash of
//! the seed, the server, the method, the path with its query and how many requests of that same
//! identity came before it. So a seed reproduces every request's outcome however concurrent
//! requests interleave: only requests of one identity (e.g. two inserts into one collection at
//! once) are told apart by their order. A retry is the next occurrence, with a fresh draw.
//! A leaf: it imports nothing of the crate.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a draw injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 429 with Retry-After, before the request is carried out.
    RateLimited,
    /// 503, before the request is carried out.
    Unavailable,
    /// 503 after the request is carried out (for a change: the change is made, the reply lost).
    /// Servers that do not lose replies answer it as [`Fault::Unavailable`].
    UnavailableAfter,
}

/// The fault draws of one server.
pub struct Faults {
    rate: f64,
    seed: u64,
    server: String,
    /// Requests seen so far, by identity hash.
    seen: Mutex<HashMap<u64, u64>>,
}

/// splitmix64's finalizer: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a (64 bits) over the parts, each followed by a 0xff byte (which UTF-8 never contains), so
/// that ("ab", "c") and ("a", "bc") differ.
fn identity(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Faults {
    /// Draws for `server` (a name that tells the simulator's servers apart) with `seed`; a
    /// `rate` of 0 or less never injects.
    pub fn new(rate: f64, seed: u64, server: impl Into<String>) -> Faults {
        Faults { rate, seed, server: server.into(), seen: Mutex::new(HashMap::new()) }
    }

    /// The fault of the next request `method` `target` (its path, and `?query` when it has one).
    pub fn draw(&self, method: &str, target: &str) -> Option<Fault> {
        if self.rate <= 0.0 {
            return None;
        }
        let id = identity(&[&self.server, method, target]);
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let count = seen.entry(id).or_insert(0);
            *count += 1;
            *count - 1
        };
        self.outcome(id, n)
    }

    /// The fault of the `n`-th (from 0) request of identity `id`.
    fn outcome(&self, id: u64, n: u64) -> Option<Fault> {
        let x = mix(mix(self.seed ^ mix(id)) ^ n);
        if (x as f64 / u64::MAX as f64) >= self.rate {
            return None;
        }
        let r = mix(x);
        Some(match (r % 2, (r >> 1) % 2) {
            (0, _) => Fault::RateLimited,
            (_, 0) => Fault::Unavailable,
            _ => Fault::UnavailableAfter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTS: [(&str, &str); 5] = [
        ("GET", "/compute/v1/projects/p/global/firewalls/a"),
        ("GET", "/compute/v1/projects/p/global/firewalls/b"),
        ("POST", "/compute/v1/projects/p/global/firewalls"),
        ("GET", "/compute/v1/projects/p/global/firewalls?filter=name%3Da"),
        ("DELETE", "/compute/v1/projects/p/global/firewalls/a"),
    ];

    /// Each request's outcome, keyed by (identity, occurrence), for requests drawn in `order`.
    fn outcomes(f: &Faults, order: &[usize]) -> HashMap<(usize, usize), Option<Fault>> {
        let mut seen = [0; REQUESTS.len()];
        let mut out = HashMap::new();
        for &i in order {
            let (m, t) = REQUESTS[i];
            out.insert((i, seen[i]), f.draw(m, t));
            seen[i] += 1;
        }
        out
    }

    #[test]
    fn interleaving_does_not_change_any_requests_outcome() {
        // Every request 20 times: one identity after another, then round-robin, then reversed.
        let one_by_one: Vec<usize> = (0..REQUESTS.len()).flat_map(|i| [i; 20]).collect();
        let round_robin: Vec<usize> = (0..20).flat_map(|_| 0..REQUESTS.len()).collect();
        let reversed: Vec<usize> = (0..20).flat_map(|_| (0..REQUESTS.len()).rev()).collect();
        let a = outcomes(&Faults::new(0.4, 7, "gcp"), &one_by_one);
        let b = outcomes(&Faults::new(0.4, 7, "gcp"), &round_robin);
        let c = outcomes(&Faults::new(0.4, 7, "gcp"), &reversed);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.values().any(Option::is_some) && a.values().any(Option::is_none), "{a:?}");
        // Threads drawing at once (one identity each) get the same outcomes too.
        let f = Faults::new(0.4, 7, "gcp");
        let threaded: HashMap<(usize, usize), Option<Fault>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..REQUESTS.len())
                .map(|i| {
                    let f = &f;
                    s.spawn(move || (0..20).map(|n| ((i, n), f.draw(REQUESTS[i].0, REQUESTS[i].1))).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(a, threaded);
    }

    #[test]
    fn seed_server_rate_and_kinds() {
        let order: Vec<usize> = (0..200).flat_map(|_| 0..REQUESTS.len()).collect();
        let base = outcomes(&Faults::new(0.3, 1, "gcp"), &order);
        assert_ne!(base, outcomes(&Faults::new(0.3, 2, "gcp"), &order), "another seed, other faults");
        assert_ne!(base, outcomes(&Faults::new(0.3, 1, "cluster-1"), &order), "another server, other faults");
        let faults: Vec<Fault> = base.values().flatten().copied().collect();
        let share = faults.len() as f64 / base.len() as f64;
        assert!((0.25..0.35).contains(&share), "{share}");
        for kind in [Fault::RateLimited, Fault::Unavailable, Fault::UnavailableAfter] {
            assert!(faults.contains(&kind), "{kind:?} is drawn");
        }
        assert!(outcomes(&Faults::new(0.0, 1, "gcp"), &order).values().all(Option::is_none));
    }
}
