//! Diagnostics: errors and warnings collected (never the first one only), each pointing at a file,
//! line and column with the offending snippet, rendered through miette.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

/// Index of a file in [`Sources`].
pub type FileId = u32;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Which file.
    pub file: FileId,
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span of `range` in `file`.
    pub fn new(file: FileId, range: std::ops::Range<usize>) -> Span {
        Span { file, start: range.start as u32, end: range.end as u32 }
    }

    /// A sub-span, `start..end` bytes from this span's start.
    pub fn sub(self, start: usize, end: usize) -> Span {
        Span { file: self.file, start: self.start + start as u32, end: self.start + end as u32 }
    }
}

/// The text of every file a diagnostic may point into.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<(String, Arc<str>)>,
}

impl Sources {
    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
        self.files.push((name.into(), text.into()));
        (self.files.len() - 1) as FileId
    }

    /// The name of a file.
    pub fn name(&self, id: FileId) -> &str {
        self.files.get(id as usize).map_or("<unknown>", |f| &f.0)
    }

    /// The text of a file.
    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id as usize).map_or("", |f| &f.1)
    }

    /// The 1-based line and column of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let text = self.text(span.file);
        let upto = &text[..(span.start as usize).min(text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The command cannot go on.
    Error,
    /// Worth knowing; the command goes on.
    Warning,
}

/// One problem: a fixed summary, where it is, a label on the snippet and a hint to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub summary: String,
    /// Where, when it comes from a file.
    pub span: Option<Span>,
    /// Text shown under the snippet.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at a span.
    pub fn error(summary: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic { severity: Severity::Error, summary: summary.into(), span: Some(span), label: None, help: None }
    }

    /// An error with no location (missing file, state problems).
    pub fn global(summary: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, summary: summary.into(), span: None, label: None, help: None }
    }

    /// Sets the label shown under the snippet.
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help.or(self.help);
        self
    }

    /// Makes this a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }
}

/// A list of diagnostics, kept in source order.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Sorts by file and position, errors before warnings at one place, and drops duplicates.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (a.span.map(|s| (s.file, s.start)), a.severity, &a.summary).cmp(&(
                b.span.map(|s| (s.file, s.start)),
                b.severity,
                &b.summary,
            ))
        });
        self.0.dedup();
    }

    /// Renders every diagnostic, each with its snippet, then a count line.
    pub fn render(&self, sources: &Sources, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&render_one(d, sources, color));
        }
        let errors = self.0.iter().filter(|d| d.severity == Severity::Error).count();
        if errors > 1 {
            out.push_str(&format!("{errors} errors\n"));
        }
        out
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// Renders one diagnostic: a header line `error: FILE:LINE:COL: summary` for logs and grep,
/// then miette's snippet with the label and help.
pub fn render_one(d: &Diagnostic, sources: &Sources, color: bool) -> String {
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = match d.span {
        Some(span) => {
            let (line, col) = sources.line_col(span);
            format!("{kind}: {}:{line}:{col}: {}\n", sources.name(span.file), d.summary)
        }
        None => format!("{kind}: {}\n", d.summary),
    };
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let source = d.span.map(|span| NamedSource::new(sources.name(span.file), sources.text(span.file).to_string()));
    let report = Report { d, source };
    let mut snippet = String::new();
    if handler.render_report(&mut snippet, &report).is_ok() {
        // miette repeats the summary on its first line; the header above already has it.
        let body: String = snippet.lines().skip(1).map(|l| format!("{}\n", l.trim_end())).collect();
        out.push_str(&body);
    }
    out
}

struct Report<'a> {
    d: &'a Diagnostic,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.summary)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.summary)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.d.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.d.span?;
        let len = (span.end.max(span.start) - span.start) as usize;
        let at = SourceSpan::from((span.start as usize, len));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(self.d.label.clone(), at))))
    }
}

impl Diagnostic {
    /// For tools: severity, summary, detail (label), help, and the file, line and column.
    pub fn to_json(&self, sources: &Sources) -> serde_json::Value {
        let range = self.span.map(|sp| {
            let (line, column) = sources.line_col(sp);
            serde_json::json!({ "filename": sources.name(sp.file), "line": line, "column": column })
        });
        serde_json::json!({
            "severity": if self.severity == Severity::Error { "error" } else { "warning" },
            "summary": self.summary,
            "detail": self.label,
            "help": self.help,
            "range": range,
        })
    }
}
