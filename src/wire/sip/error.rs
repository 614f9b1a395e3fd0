//! The parse error: the SIP status to answer with (or none), and what was wrong where.

use std::fmt;

/// A malformed message or header value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{detail}")]
pub struct ParseError {
    /// The SIP status the server should answer with (400 Bad Request,
    /// 505 Version Not Supported, 513 Message Too Large, 416 Unsupported URI
    /// Scheme), or `None` when the input must be dropped without an answer
    /// (garbage that is not SIP, keep-alives, malformed responses).
    pub status: Option<u16>,
    /// Human readable description naming what was wrong and where.
    pub detail: String,
}

impl ParseError {
    /// Creates an error with an explicit status.
    pub fn new(status: Option<u16>, detail: impl Into<String>) -> Self {
        ParseError {
            status,
            detail: detail.into(),
        }
    }

    /// An error answered with 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Some(400), detail)
    }

    /// An error that must not be answered (the input is dropped).
    pub fn silent(detail: impl Into<String>) -> Self {
        Self::new(None, detail)
    }

    pub(super) fn too_large(detail: impl Into<String>) -> Self {
        Self::new(Some(513), detail)
    }

    pub(super) fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.detail = format!("{prefix}: {}", self.detail);
        self
    }

    pub(super) fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }
}

const SNIPPET_MAX: usize = 60;

/// Quoted, length-limited rendering of input text for error messages.
pub(super) fn snippet(s: &str) -> String {
    if s.len() <= SNIPPET_MAX {
        return format!("{s:?}");
    }
    let mut end = SNIPPET_MAX;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", s.get(..end).unwrap_or(""))
}

pub(super) fn snippet_bytes(b: &[u8]) -> String {
    let cut = b.get(..SNIPPET_MAX * 2).unwrap_or(b);
    snippet(&String::from_utf8_lossy(cut))
}
