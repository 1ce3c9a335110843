use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StorageError;

/// Identifies one job. Every key of a job lives under its namespace, so jobs
/// never see each other's objects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

impl JobId {
    /// A job id of 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn new(id: impl Into<String>) -> Result<Self, StorageError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(StorageError::InvalidKey {
                key: id,
                reason: "a job id is 1 to 64 ASCII letters, digits, '-' or '_'",
            });
        }
        Ok(Self(id))
    }

    /// A job id that no other call, in this or any other process, returns:
    /// `<prefix>-<process id>-<nanoseconds since 1970>-<call number>`.
    /// `prefix` must be valid in a job id and at most 20 characters long.
    pub fn unique(prefix: &str) -> Result<Self, StorageError> {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self::new(format!(
            "{prefix}-{}-{nanos}-{}",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key `name` inside this job.
    pub fn key(&self, name: impl Into<String>) -> Result<ObjectKey, StorageError> {
        ObjectKey::new(self.clone(), name)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key inside one job's namespace: `<job>/<name>` in every backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    job: JobId,
    name: String,
}

impl ObjectKey {
    /// `name` is 1 to 512 printable ASCII characters without `..` segments or
    /// a leading `/`; `/` separates levels.
    pub fn new(job: JobId, name: impl Into<String>) -> Result<Self, StorageError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 512
            && name.bytes().all(|b| b.is_ascii_graphic())
            && !name.starts_with('/')
            && !name
                .split('/')
                .any(|segment| segment.is_empty() || segment == "..");
        if !valid {
            return Err(StorageError::InvalidKey {
                key: name,
                reason: "a key name is 1 to 512 printable ASCII characters, '/'-separated non-empty segments, no '..'",
            });
        }
        Ok(Self { job, name })
    }

    /// The job that owns the key.
    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// The name inside the job.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full path, `<job>/<name>`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.job, self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_job_ids_differ_and_keep_their_prefix() {
        let (a, b) = (JobId::unique("run").unwrap(), JobId::unique("run").unwrap());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("run-"), "{a}");
        assert!(JobId::unique("bad prefix").is_err());
    }

    #[test]
    fn keys_are_validated() {
        let job = JobId::new("job-1").unwrap();
        assert_eq!(job.key("tiles/a/0_0").unwrap().path(), "job-1/tiles/a/0_0");
        for bad in ["", "/abs", "a//b", "a/../b", "sp ace", "tab\t"] {
            assert!(job.key(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a/b", "x".repeat(65).as_str(), "é"] {
            assert!(JobId::new(bad).is_err(), "{bad:?}");
        }
    }
}
