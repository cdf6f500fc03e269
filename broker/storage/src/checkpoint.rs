//! Checkpoint files: small text files in the partition directory that are
//! always rewritten whole, in Kafka's `CheckpointFile` format.
//!
//! ```text
//!   0        <- format version
//!   2        <- number of entries
//!   0 0      <- one entry per line
//!   3 250
//! ```
//!
//! A write goes to `<name>.tmp`, is fsynced, renamed over `<name>` and the
//! directory fsynced, so after a crash the file holds either the old or the
//! new contents, never a mix.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::io_error;
use crate::log::sync_dir;
use crate::Error;

/// The only format version written and read.
const VERSION: u32 = 0;

/// What reading a checkpoint found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded<T> {
    /// There is no such file.
    Missing,
    /// The file does not parse; the reason.
    Malformed(String),
    /// The entries, in file order.
    Entries(Vec<T>),
}

/// Atomically replaces `dir/name` with `lines` (without line breaks) as
/// the entries.
pub(crate) fn write(dir: &Path, name: &str, lines: &[String]) -> Result<(), Error> {
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    sync_dir(dir)
}

/// Reads `dir/name`, parsing each entry line with `parse`, which returns
/// `None` for a line it does not accept.
pub(crate) fn read<T>(
    dir: &Path,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Loaded<T>, Error> {
    let path = dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io_error(&path, e)),
    };
    let Ok(text) = String::from_utf8(text) else {
        return Ok(Loaded::Malformed("not utf-8 text".to_string()));
    };
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(version) if version.parse() == Ok(VERSION) => {}
        Some(version) => {
            return Ok(Loaded::Malformed(format!(
                "unsupported version line {version:?}"
            )))
        }
        None => return Ok(Loaded::Malformed("empty file".to_string())),
    }
    let Some(count) = lines.next().and_then(|l| l.trim().parse::<usize>().ok()) else {
        return Ok(Loaded::Malformed("missing or bad entry count".to_string()));
    };
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines.by_ref().take(count) {
        match parse(line) {
            Some(entry) => entries.push(entry),
            None => return Ok(Loaded::Malformed(format!("bad entry line {line:?}"))),
        }
    }
    if entries.len() != count {
        return Ok(Loaded::Malformed(format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Ok(Loaded::Malformed(format!(
            "more lines than the {count} entries"
        )));
    }
    Ok(Loaded::Entries(entries))
}
