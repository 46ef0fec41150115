//! Diagnostics: errors and warnings about user input, located in a source file.
//!
//! The core returns `(T, Vec<Diagnostic>)` rather than failing on the first problem, so that every
//! problem in a file is reported at once, sorted by position. Byte offsets are turned into
//! line:column in one place, [`SourceFile::location`].

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A 1-based line and column (in characters) in a named file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A source text with its path, able to turn byte offsets into [`Location`]s.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile { path: path.into(), text, line_starts }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The location of byte `offset` (clamped to the text's length). Columns count characters; an
    /// offset inside a multi-byte character (hcl-edit reports some errors there) is that character.
    pub fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        Location { file: self.path.clone(), line: line + 1, column }
    }

    /// The location of the start of a byte span.
    pub fn span_location(&self, span: &Range<usize>) -> Location {
        self.location(span.start)
    }

    /// The location of a 1-based line and column, as reported by parsers that do not give offsets.
    pub fn line_col(&self, line: usize, column: usize) -> Location {
        Location { file: self.path.clone(), line, column }
    }
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// One line, lower case, no trailing period: `unknown tier "gold" (expected free, professional, enterprise)`.
    pub message: String,
    /// Where the problem is, when it is in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Further lines of explanation (e.g. the members of a dependency cycle).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, message: message.into(), location: None, notes: Vec::new() }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, message: message.into(), location: None, notes: Vec::new() }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: message` for errors, `path:line:col: warning: message` for warnings;
    /// notes follow on their own indented lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        } else if self.severity == Severity::Error {
            f.write_str("error: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)?;
        for note in &self.notes {
            write!(f, "\n    {note}")?;
        }
        Ok(())
    }
}

/// Sorts diagnostics by file, line and column (unlocated ones last), keeping insertion order for ties,
/// and removes exact duplicates.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| match (&a.location, &b.location) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    diags.dedup();
}

pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = SourceFile::new("t.hcl", "ab\ncdé\nf");
        assert_eq!(src.location(0).to_string(), "t.hcl:1:1");
        assert_eq!(src.location(3).to_string(), "t.hcl:2:1");
        assert_eq!(src.location(7).to_string(), "t.hcl:2:4", "columns count characters, not bytes");
        assert_eq!(src.location(8).to_string(), "t.hcl:3:1");
        assert_eq!(src.location(999).to_string(), "t.hcl:3:2");
        // hcl-edit reports some errors at an offset inside a character: that character.
        assert_eq!(src.location(6).to_string(), "t.hcl:2:3");
    }

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::error("unknown tier \"gold\"").at(Location { file: "a.hcl".into(), line: 3, column: 5 });
        assert_eq!(d.to_string(), "a.hcl:3:5: unknown tier \"gold\"");
        let w = Diagnostic::warning("x").with_note("n");
        assert_eq!(w.to_string(), "warning: x\n    n");
    }
}
