//! Source files, spans and compiler-style diagnostics (file:line:column, the source line with a
//! `^` marker and a hint), accumulated so a spec reports all of its errors at once.

use serde::Serialize;
use std::fmt;

/// One spec file handed to [`crate::compile`]: a display name (usually the path) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// A byte range in one of the loaded files (index into the compiler's file table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub file: u32,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: u32, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A resolved position, for reports and for the recorder's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

/// One error in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The source line the error is on (no newline).
    pub source_line: String,
    /// Length of the marked range on that line (at least 1).
    pub width: usize,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// The one diagnostic format of both binaries: `error: FILE:LINE:COL: message`, then the
    /// source line with a `^` marker under the offending text, then the hint. Without a
    /// position (`line` 0): `error: FILE: message` alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "error: {}: {}", self.file, self.message)?;
            if let Some(h) = &self.hint {
                write!(f, "\n  = hint: {h}")?;
            }
            return Ok(());
        }
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        writeln!(
            f,
            "error: {}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{num} | {}", self.source_line)?;
        let lead: String = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{pad} | {lead}{}", "^".repeat(self.width.max(1)))?;
        if let Some(h) = &self.hint {
            write!(f, "\n{pad} = hint: {h}")?;
        }
        Ok(())
    }
}

/// All the errors found in a set of spec files, in file and position order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} error(s) in spec", .0.len())]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders every diagnostic like a compiler (see [`Diagnostic`]'s format), separated by
    /// blank lines, then a count (`2 errors in spec`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.to_string());
            out.push_str("\n\n");
        }
        out.push_str(&format!(
            "{} error{} in spec",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        ));
        out
    }

    /// Every diagnostic rendered on its own (no count), for callers that merge them with
    /// errors of their own.
    pub fn rendered(&self) -> Vec<String> {
        self.0.iter().map(|d| d.to_string()).collect()
    }
}

/// Collects raw errors (span + message + hint) and resolves them against the file table.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub errs: Vec<(Span, String, Option<String>)>,
    /// Names of monitors whose declaration did not parse: still known by name, so their uses
    /// are not reported as unknown (the syntax error is).
    pub unparsed_monitors: Vec<String>,
}

impl Sink {
    pub fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.errs.push((span, msg.into(), None));
    }
    pub fn hint(&mut self, span: Span, msg: impl Into<String>, hint: impl Into<String>) {
        self.errs.push((span, msg.into(), Some(hint.into())));
    }
    pub fn is_empty(&self) -> bool {
        self.errs.is_empty()
    }
    pub fn into_diagnostics(mut self, files: &[SourceFile]) -> Diagnostics {
        self.errs.sort_by_key(|(s, _, _)| (s.file, s.start));
        self.errs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        Diagnostics(
            self.errs
                .into_iter()
                .map(|(s, m, h)| resolve(files, s, m, h))
                .collect(),
        )
    }
}

/// Line (1-based), column (1-based, in characters) and the line text of a byte offset. A line
/// ends at LF, CRLF or a lone CR (old Mac files), each counted as one line break.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize, &str) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let is_break = |c: char| c == '\n' || c == '\r';
    // a byte-order mark at the start of the file is skipped: not part of line 1's columns
    let first = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let line_start = text[..offset]
        .rfind(is_break)
        .map(|i| i + 1)
        .unwrap_or(first.min(offset));
    let line_end = text[offset..]
        .find(is_break)
        .map(|i| offset + i)
        .unwrap_or(text.len());
    let before = &text.as_bytes()[..line_start];
    let crlf = before.windows(2).filter(|w| w == b"\r\n").count();
    let breaks = before.iter().filter(|&&c| c == b'\n' || c == b'\r').count();
    let line = breaks - crlf + 1;
    let col = text[line_start..offset].chars().count() + 1;
    (line, col, &text[line_start..line_end])
}

pub(crate) fn location(files: &[SourceFile], span: Span) -> Location {
    match files.get(span.file as usize) {
        Some(f) => {
            let (line, column, _) = line_col(&f.text, span.start as usize);
            Location {
                file: f.name.clone(),
                line,
                column,
            }
        }
        None => Location::default(),
    }
}

fn resolve(files: &[SourceFile], s: Span, message: String, hint: Option<String>) -> Diagnostic {
    let Some(f) = files.get(s.file as usize) else {
        return Diagnostic {
            message,
            file: "<unknown>".into(),
            line: 0,
            column: 0,
            source_line: String::new(),
            width: 1,
            hint,
        };
    };
    let (line, column, src) = line_col(&f.text, s.start as usize);
    let avail = src.chars().count().saturating_sub(column - 1).max(1);
    let len = f
        .text
        .get(s.start as usize..s.end as usize)
        .map(|t| t.chars().count())
        .unwrap_or(1);
    Diagnostic {
        message,
        file: f.name.clone(),
        line,
        column,
        source_line: src.to_string(),
        width: len.clamp(1, avail),
        hint,
    }
}

/// The source text of a span (empty if out of range).
pub(crate) fn span_text(files: &[SourceFile], s: Span) -> String {
    files
        .get(s.file as usize)
        .and_then(|f| f.text.get(s.start as usize..s.end as usize))
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
