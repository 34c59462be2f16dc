//! The machine-readable event stream of `--json` (plan, apply, destroy, drift): one JSON object
//! per line on stdout, each written and flushed when it happens. Every event has `@level`,
//! `@message` (the human line), `@timestamp` (RFC 3339), `@version` ([`FORMAT_VERSION`]) and
//! `type`; the types and their fields are in `engine/schemas/events-v1.schema.json`.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map as JMap, Value as J, json};

/// The event stream's format version: it changes only when a field changes meaning or
/// disappears.
pub const FORMAT_VERSION: &str = "1";

/// Writes events to stdout, one line each, flushed at once.
pub struct Events {
    out: Mutex<std::io::Stdout>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A stream on stdout.
    pub fn new() -> Events {
        Events { out: Mutex::new(std::io::stdout()) }
    }

    /// Writes one event of `kind` with `fields`.
    pub fn emit(&self, level: &str, kind: &str, message: &str, fields: J) {
        let mut o = JMap::new();
        o.insert("@level".into(), J::from(level));
        o.insert("@message".into(), J::from(message));
        o.insert("@timestamp".into(), J::from(meshform_engine::clock::now_rfc3339()));
        o.insert("@version".into(), J::from(FORMAT_VERSION));
        o.insert("type".into(), J::from(kind));
        if let J::Object(f) = fields {
            o.extend(f);
        }
        let line = serde_json::to_string(&J::Object(o)).unwrap_or_default();
        if let Ok(mut w) = self.out.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }

    /// The first event of every stream.
    pub fn version(&self) {
        let v = env!("CARGO_PKG_VERSION");
        self.emit("info", "version", &format!("meshform {v}"), json!({ "meshform_version": v }));
    }

    /// A diagnostic (an error or a warning), with where it is when it comes from a file.
    pub fn diagnostic(&self, d: J) {
        let summary = d.get("summary").and_then(J::as_str).unwrap_or("").to_string();
        let level = if d.get("severity").and_then(J::as_str) == Some("warning") { "warn" } else { "error" };
        self.emit(level, "diagnostic", &summary, json!({ "diagnostic": d }));
    }
}
