//! Reading sysfs and procfs under an injectable root.
//!
//! Owns [`SysRoot`] (a path prefix, `/` on a live host, a tempdir in tests)
//! and the typed errors of everything read from it. Invariants: no read
//! panics on any file content; every file is size-bounded
//! ([`limits::sysfs_attr_max_bytes`] unless the caller says otherwise)
//! before it is read; directory walks are bounded by
//! [`limits::dir_entries_max_count`]; cpu lists never name a CPU at or above
//! [`limits::cpus_max_count`].

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::limits;

/// Why something under the [`SysRoot`] could not be read.
#[derive(Debug, Error)]
pub enum SysError {
    /// The file does not exist (an old kernel, a VM without the feature).
    #[error("{0}: not present")]
    Missing(PathBuf),
    /// The file exists but reading it failed.
    #[error("{path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is larger than the limit for its kind.
    #[error("{path}: larger than {limit_bytes} bytes")]
    TooLarge {
        /// File that is too large.
        path: PathBuf,
        /// The limit it broke.
        limit_bytes: u64,
    },
    /// The content is not what the kernel writes there.
    #[error("{path}: cannot parse {value:?} as {expected}")]
    Parse {
        /// File that held the value.
        path: PathBuf,
        /// The value (truncated).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl SysError {
    /// True when the file is simply absent (versus unreadable or corrupt).
    pub fn is_missing(&self) -> bool {
        matches!(self, SysError::Missing(_))
    }

    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            SysError::Missing(path.to_path_buf())
        } else {
            SysError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn parse(path: &Path, value: &str, expected: &'static str) -> Self {
        // Keep messages short even when a file is garbage.
        let value: String = value.chars().take(64).collect();
        SysError::Parse {
            path: path.to_path_buf(),
            value,
            expected,
        }
    }
}

/// A root under which `/sys` and `/proc` are read.
///
/// Paths given to its methods are absolute host paths (`/sys/block`); the
/// root is prefixed to them, so tests can build a fake tree in a tempdir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    root: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::new("/")
    }
}

impl SysRoot {
    /// A root at `root` (`/` for the live host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysRoot { root: root.into() }
    }

    /// The prefix itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `host_path` under this root.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Whether `host_path` exists under this root.
    pub fn exists(&self, host_path: impl AsRef<Path>) -> bool {
        self.path(host_path).exists()
    }

    /// Reads a small attribute file, trimmed of surrounding whitespace.
    pub fn read(&self, host_path: impl AsRef<Path>) -> Result<String, SysError> {
        read_bounded(&self.path(host_path), limits::sysfs_attr_max_bytes)
            .map(|s| s.trim().to_string())
    }

    /// Reads a file bounded by `limit_bytes`, untrimmed.
    pub fn read_large(
        &self,
        host_path: impl AsRef<Path>,
        limit_bytes: u64,
    ) -> Result<String, SysError> {
        read_bounded(&self.path(host_path), limit_bytes)
    }

    /// Reads an attribute and parses it as a decimal integer.
    pub fn read_i64(&self, host_path: impl AsRef<Path>) -> Result<i64, SysError> {
        let path = self.path(&host_path);
        let s = self.read(&host_path)?;
        s.parse::<i64>()
            .map_err(|_| SysError::parse(&path, &s, "an integer"))
    }

    /// Reads an attribute holding a cpu list (`0-3,8,10-11`).
    pub fn read_cpu_list(&self, host_path: impl AsRef<Path>) -> Result<Vec<u32>, SysError> {
        let path = self.path(&host_path);
        let s = self.read(&host_path)?;
        parse_cpu_list(&s).ok_or_else(|| SysError::parse(&path, &s, "a cpu list"))
    }

    /// Names in a directory, sorted, at most [`limits::dir_entries_max_count`].
    pub fn list_dir(&self, host_path: impl AsRef<Path>) -> Result<Vec<String>, SysError> {
        let path = self.path(host_path);
        let rd = fs::read_dir(&path).map_err(|e| SysError::io(&path, e))?;
        let mut names = Vec::new();
        for entry in rd.take(limits::dir_entries_max_count) {
            let entry = entry.map_err(|e| SysError::io(&path, e))?;
            let name: OsString = entry.file_name();
            // Kernel names are ASCII; skip anything else rather than fail.
            if let Ok(name) = name.into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Canonical host path of `host_path` (resolving sysfs symlinks such as
    /// `/sys/block/X/device`), still under this root.
    pub fn canonical(&self, host_path: impl AsRef<Path>) -> Result<PathBuf, SysError> {
        let path = self.path(host_path);
        fs::canonicalize(&path).map_err(|e| SysError::io(&path, e))
    }
}

fn read_bounded(path: &Path, limit_bytes: u64) -> Result<String, SysError> {
    let file = fs::File::open(path).map_err(|e| SysError::io(path, e))?;
    // sysfs reports size 4096 for every attribute, so bound the read itself
    // rather than trusting metadata.
    let mut buf = Vec::new();
    file.take(limit_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SysError::io(path, e))?;
    if buf.len() as u64 > limit_bytes {
        return Err(SysError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes,
        });
    }
    String::from_utf8(buf).map_err(|_| SysError::parse(path, "<binary>", "UTF-8 text"))
}

/// Parses a Linux cpu list (`0-3,8,10-11`, empty allowed) into sorted,
/// deduplicated CPU numbers. `None` on malformed input or a CPU index at or
/// above [`limits::cpus_max_count`].
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let mut cpus = Vec::new();
    if s.is_empty() {
        return Some(cpus);
    }
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let v = part.parse::<u32>().ok()?;
                (v, v)
            }
        };
        if lo > hi || hi as usize >= limits::cpus_max_count {
            return None;
        }
        cpus.extend(lo..=hi);
        // A list of overlapping ranges could still blow up; cap the total.
        if cpus.len() > limits::cpus_max_count * 2 {
            return None;
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Formats CPU numbers as a compact Linux cpu list (`0-3,8`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(format_cpu_list(&[11, 0, 1, 2, 3, 8, 10]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn bad_cpu_lists_are_rejected() {
        for bad in ["3-1", "a", "1,,2", "0-99999", "-", "1-"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_and_garbage_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        assert!(root.read("/sys/nothing").unwrap_err().is_missing());
        fs::create_dir_all(root.path("/sys/x")).unwrap();
        fs::write(root.path("/sys/x/n"), "12x\n").unwrap();
        assert!(matches!(
            root.read_i64("/sys/x/n"),
            Err(SysError::Parse { .. })
        ));
        fs::write(root.path("/sys/x/big"), vec![b'1'; 70 << 10]).unwrap();
        assert!(matches!(
            root.read("/sys/x/big"),
            Err(SysError::TooLarge { .. })
        ));
        fs::write(root.path("/sys/x/n"), " 42\n").unwrap();
        assert_eq!(root.read_i64("/sys/x/n").unwrap(), 42);
    }
}
