//! The real tools that judge the simulator in tests (gcloud, kubectl, openssl), found on PATH:
//! a test that runs one starts it through [`need`], so that a missing tool fails it with a
//! message naming the tool, not an opaque spawn error. A leaf: it imports nothing of the crate.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Where `tool` is on PATH: an executable file named so in one of its directories.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| executable(p))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of `tool` on PATH, to run it; panics (failing the test that needs it) when it is
/// not there: `this test needs kubectl on PATH: install it (see .ci/run)`.
#[track_caller]
pub fn need(tool: &str) -> PathBuf {
    find(tool).unwrap_or_else(|| panic!("this test needs {tool} on PATH: install it (see .ci/run)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_tool_is_named() {
        assert!(super::find("sh").is_some());
        assert!(super::find("no-such-tool-anywhere").is_none());
        let e = std::panic::catch_unwind(|| super::need("no-such-tool-anywhere")).unwrap_err();
        assert_eq!(
            e.downcast_ref::<String>().map(String::as_str),
            Some("this test needs no-such-tool-anywhere on PATH: install it (see .ci/run)")
        );
    }
}
