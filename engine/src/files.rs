//! Reading the text files a desired state names (the file itself, `--var-file`, `file()`,
//! `templatefile()`, `k8s_manifest.file`): regular files only, at most [`MAX_FILE_BYTES`], valid
//! UTF-8. Anything else is a clear error, never a hang (`/dev/zero`, a FIFO) or a huge read.

use std::io::Read;
use std::path::Path;

/// The largest file meshform reads as text.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a file could not be read as text.
#[derive(Debug)]
pub enum ReadError {
    /// The file does not exist.
    NotFound,
    /// Anything else, said in words (kind of file, size, I/O error).
    Other(String),
    /// Not UTF-8: the line and column (1-based, in characters) of the first invalid byte.
    NotUtf8 {
        /// The line (1-based).
        line: usize,
        /// The column (1-based, in characters).
        column: usize,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("no such file"),
            ReadError::Other(m) => f.write_str(m),
            ReadError::NotUtf8 { line, column } => {
                write!(f, "not valid UTF-8 text: an invalid byte at line {line}, column {column}")
            }
        }
    }
}

/// Reads `path` as UTF-8 text within the limits above.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Other(e.to_string()),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(ReadError::Other(format!("{what}; only regular files are read")));
    }
    let too_big =
        || ReadError::Other(format!("larger than the {} MiB limit for files meshform reads", MAX_FILE_BYTES >> 20));
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // Bounded even if the file grows while it is read.
    std::fs::File::open(path).map_err(io)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = std::str::from_utf8(good).unwrap_or_default();
        let line = text.matches('\n').count() + 1;
        let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ReadError::NotUtf8 { line, column }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_big_files_and_names_the_invalid_byte() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(read_text(Path::new("/dev/zero")), Err(ReadError::Other(m)) if m.contains("regular")));
        assert!(matches!(read_text(d.path()), Err(ReadError::Other(m)) if m.contains("directory")));
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_text(&big), Err(ReadError::Other(m)) if m.contains("4 MiB")));
        let bad = d.path().join("bad");
        std::fs::write(&bad, b"ok\nab\xffc").unwrap();
        assert!(matches!(read_text(&bad), Err(ReadError::NotUtf8 { line: 2, column: 3 })));
        assert!(matches!(read_text(&d.path().join("none")), Err(ReadError::NotFound)));
        std::fs::write(&bad, "fine\n").unwrap();
        assert_eq!(read_text(&bad).unwrap(), "fine\n");
    }
}
