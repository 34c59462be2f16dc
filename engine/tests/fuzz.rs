//! Mutation fuzzing of the config loader and the expression language: files of plans/ and
//! testdata/ (and expression snippets), mutated by a seeded generator (byte flips, deletions,
//! duplications, splices between files, inserted tokens of the language), each loaded as a
//! desired-state file through parse, schema checks, graph and expression evaluation. Every input
//! must load or fail with diagnostics: no panic, no abort, no hang. CI runs a bounded smoke;
//! `cargo test --release -p meshform-engine --test fuzz -- --ignored --nocapture` runs 10^6
//! executions (`MESHFORM_FUZZ_EXECS`, `MESHFORM_FUZZ_SEED`) and prints the figures.

use std::path::Path;
use std::time::{Duration, Instant};

use meshform_engine::builtin::Builtin;
use meshform_engine::diag::Sources;
use meshform_engine::provider::Registry;
use meshform_engine::session::Session;
use meshform_engine::vars::VarInputs;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(std::sync::Arc::new(Builtin));
    r
}

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in ["plans", "testdata/valid", "testdata/invalid"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")) {
            out.push(std::fs::read(p).unwrap());
        }
    }
    for e in [
        "${length([1, 2, 3]) + 1 > 2 ? upper(\"a\") : lower(\"B\")}",
        "${{ a = 1, b = [true, null] }[\"a\"] * -2 % 3}",
        "${join(\",\", [for_each_key, \"x\"])}",
        "${file(\"data.txt\")} ${templatefile(\"t.yaml\")}",
        "${pairs(clusters)} ${cidrsubnet(\"10.0.0.0/8\", 8, 2)}",
        "${!!!(1 == 1.0) && (2 <= 3 || \"a\" != \"b\")}",
    ] {
        out.push(format!("[resources.meshform_data.x]\ninput = \"{}\"\n", e.replace('"', "\\\"")).into_bytes());
    }
    assert!(out.len() > 20, "the corpus is plans/ and testdata/");
    out
}

/// xorshift64*: the same seed, the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: [&[u8]; 25] = [
    b" + 1",
    b"${",
    b"}",
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'''",
    b"\n[resources.meshform_data.y]\n",
    b"for_each = ",
    b"${each.key}",
    b"${var.x}",
    b"${clusters.c.name}",
    b"depends_on = [\"meshform_data.x\"]",
    b"1.0/0",
    b"9223372036854775807",
    b"\xff",
    b"\\u0000",
    b"${file(\"/dev/zero\")}",
    b"\n[[checks]]\n",
    b" = ",
    b"[[[[[[[[",
];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = (at + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(256)).min(other.len());
                b.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let n = 1 + rng.below(300);
                let t = TOKENS[rng.below(5)];
                let rep: Vec<u8> = t.iter().copied().cycle().take(t.len() * n).collect();
                b.splice(at..at, rep);
            }
        }
    }
    b
}

/// Loads one input as a desired-state file in `dir`; returns whether it was valid.
fn load(bytes: &[u8], dir: &Path) -> bool {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut sources = Sources::default();
    let file = sources.add("fuzz.toml", text);
    match meshform_engine::config::parse(sources, file, "fuzz.toml".into(), dir.to_path_buf(), &registry()) {
        Err(_) => false,
        Ok((cfg, diags)) => Session::from_config(cfg, diags, registry(), &VarInputs::default()).is_ok(),
    }
}

struct Figures {
    execs: u64,
    valid: u64,
    slowest: Duration,
    elapsed: Duration,
}

fn run(execs: u64, seed: u64) -> Figures {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "some data\n").unwrap();
    std::fs::write(dir.path().join("t.yaml"), "a: ${1 + 1}\n").unwrap();
    let mut rng = Rng(seed.max(1));
    let started = Instant::now();
    let mut f = Figures { execs: 0, valid: 0, slowest: Duration::ZERO, elapsed: Duration::ZERO };
    for _ in 0..execs {
        let input = mutate(&mut rng, &corpus);
        if let Ok(p) = std::env::var("MESHFORM_FUZZ_LAST") {
            std::fs::write(p, &input).unwrap();
        }
        let t = Instant::now();
        // A panic fails the test with the input that caused it.
        let ok = std::panic::catch_unwind(|| load(&input, dir.path())).unwrap_or_else(|_| {
            panic!("panic on input (seed {seed}, exec {}):\n{}", f.execs, String::from_utf8_lossy(&input))
        });
        f.slowest = f.slowest.max(t.elapsed());
        f.valid += u64::from(ok);
        f.execs += 1;
    }
    f.elapsed = started.elapsed();
    f
}

#[test]
fn mutated_plans_and_expressions_load_or_fail_cleanly() {
    let f = run(20_000, 1);
    assert_eq!(f.execs, 20_000);
    assert!(f.slowest < Duration::from_secs(2), "an input took {:?}: a hang in the making", f.slowest);
    assert!(f.valid > 0 && f.valid < f.execs, "the mutations reach both outcomes: {} valid", f.valid);
}

#[test]
#[ignore = "long: 10^6 executions; run with --release --ignored --nocapture"]
fn a_million_mutations() {
    let execs = std::env::var("MESHFORM_FUZZ_EXECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let seed = std::env::var("MESHFORM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(2026);
    let f = run(execs, seed);
    assert!(f.slowest < Duration::from_secs(2), "an input took {:?}", f.slowest);
    println!(
        "fuzz: {} executions (seed {seed}), {} valid, 0 crashes, slowest {:?}, {:.1} s ({:.0}/s)",
        f.execs,
        f.valid,
        f.slowest,
        f.elapsed.as_secs_f64(),
        f.execs as f64 / f.elapsed.as_secs_f64()
    );
}
