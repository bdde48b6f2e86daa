//! Object stores: where data files land. The local one is a directory; S3 plugs in behind the
//! same trait.

use std::path::{Path, PathBuf};

use sluice_engine::error::ResultExt;
use sluice_engine::Result;

/// A flat key space of immutable objects.
pub trait ObjectStore: Send + Sync {
    /// Writes `data` at `key` atomically: readers see the whole object or nothing.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Deletes `key`; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    fn exists(&self, key: &str) -> Result<bool>;
    /// The whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// The whole object, or `None` when there is none at `key`.
    fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `data` at `key` only if no object is there (S3's `If-None-Match: *`); `false`
    /// when one is. Of writers racing for one key, exactly one gets `true`. A store that cannot
    /// promise that must not claim to: the commit state's log relies on it.
    fn create(&self, key: &str, data: &[u8]) -> Result<bool>;
    /// Objects under `prefix` (a folder ending in `/`), with their sizes.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
    /// The URL of a key or folder, as catalogs record locations.
    fn url(&self, key: &str) -> String;
    /// Starts an object at `key` that is written in pieces while it is being produced. Nothing
    /// is visible at `key` until [`Upload::complete`].
    fn upload(&self, key: &str) -> Result<Box<dyn Upload>>;
}

/// An object being written: pieces go out as they come (parts of a multipart upload, a hidden
/// file), and the object appears whole at `complete`, or not at all.
pub trait Upload: Send {
    /// Appends bytes; may send a part on its way.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Makes the object visible, with everything written.
    fn complete(self: Box<Self>) -> Result<()>;
    /// Gives the object up, best effort: what was sent is dropped.
    fn abort(self: Box<Self>);
}

/// An [`Upload`] as `std::io::Write`, for encoders. The first store error is kept whole for
/// [`UploadWriter::error`], since encoders wrap it.
pub struct UploadWriter {
    upload: Option<Box<dyn Upload>>,
    error: Option<sluice_engine::EngineError>,
}

impl UploadWriter {
    pub fn new(upload: Box<dyn Upload>) -> Self {
        UploadWriter {
            upload: Some(upload),
            error: None,
        }
    }
    /// The store error behind a failed write, if one was.
    pub fn error(&mut self) -> Option<sluice_engine::EngineError> {
        self.error.take()
    }
    pub fn written(&self) -> u64 {
        self.upload.as_ref().map_or(0, |u| u.written())
    }
    /// The upload, to complete; `None` once taken or aborted.
    pub fn take(&mut self) -> Option<Box<dyn Upload>> {
        self.upload.take()
    }
}

impl std::io::Write for UploadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(u) = self.upload.as_mut() else {
            return Err(std::io::Error::other("the upload was closed"));
        };
        match u.write(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let text = e.to_string();
                self.error = Some(e);
                Err(std::io::Error::other(text))
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A hidden name beside `path` that no other writer uses: the worker's id (host, pid, start
/// time: processes in containers sharing a volume may all be pid 1) and a number of its own.
fn scratch_beside(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let worker = sluice_engine::ownership::worker_id().replace(['/', ':'], "_");
    path.with_file_name(format!(".{name}.{worker}.{n}.new"))
}

/// A directory as an object store; keys are relative paths.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates) the directory.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
        let root =
            std::fs::canonicalize(root).context(|| format!("resolving {}", root.display()))?;
        Ok(LocalStore { root })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// `data` written whole and synced under a hidden name beside `path` (its folder made if
    /// missing): the name, for the caller to move or link into place.
    fn write_beside(&self, path: &Path, data: &[u8]) -> Result<PathBuf> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let tmp = scratch_beside(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .context(|| format!("syncing {}", tmp.display()))?;
        Ok(tmp)
    }
}

impl ObjectStore for LocalStore {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let tmp = self.write_beside(&path, data)?;
        std::fs::rename(&tmp, &path).context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(sluice_engine::EngineError::external(
                format!("deleting {key}"),
                e,
            )),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.path(key).is_file())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key);
        std::fs::read(&path).context(|| format!("reading {}", path.display()))
    }

    fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sluice_engine::EngineError::external(
                format!("reading {}", path.display()),
                e,
            )),
        }
    }

    fn create(&self, key: &str, data: &[u8]) -> Result<bool> {
        // Written whole beside its name, then linked to it: link(2) fails when the name
        // exists, so of racing writers one wins, and a reader never sees half an object.
        let path = self.path(key);
        let tmp = self.write_beside(&path, data)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(sluice_engine::EngineError::external(
                format!("creating {}", path.display()),
                e,
            )),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let dir = self.path(prefix);
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(sluice_engine::EngineError::external(
                    format!("listing {}", dir.display()),
                    e,
                ))
            }
        };
        for entry in rd {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let meta = entry.metadata().context(|| format!("reading {name}"))?;
            if meta.is_file() {
                out.push((format!("{}{}", prefix, name), meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn url(&self, key: &str) -> String {
        format!("file://{}", self.path(key).display())
    }

    fn upload(&self, key: &str) -> Result<Box<dyn Upload>> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Hidden (listings skip dot files) until renamed into place.
        let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
        let file = std::fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
        Ok(Box::new(LocalUpload {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            path,
            written: 0,
        }))
    }
}

/// A file written beside its final name, and renamed into place when complete.
struct LocalUpload {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    written: u64,
}

impl Upload for LocalUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        self.file
            .write_all(data)
            .context(|| format!("writing {}", self.tmp.display()))?;
        self.written += data.len() as u64;
        Ok(())
    }
    fn written(&self) -> u64 {
        self.written
    }
    fn complete(self: Box<Self>) -> Result<()> {
        let LocalUpload {
            file, tmp, path, ..
        } = *self;
        let file = file.into_inner().map_err(|e| {
            sluice_engine::EngineError::external(
                format!("writing {}", tmp.display()),
                e.into_error(),
            )
        })?;
        file.sync_all()
            .context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }
    fn abort(self: Box<Self>) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_invisible_until_complete_and_leaves_nothing_when_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut up = store.upload("t/2024/01/02/a.parquet").unwrap();
        up.write(b"first ").unwrap();
        up.write(b"second").unwrap();
        assert_eq!(up.written(), 12);
        assert!(!store.exists("t/2024/01/02/a.parquet").unwrap());
        assert!(store.list("t/2024/01/02/").unwrap().is_empty());
        up.complete().unwrap();
        assert_eq!(
            store.get("t/2024/01/02/a.parquet").unwrap(),
            b"first second"
        );

        let mut up = store.upload("t/2024/01/02/b.parquet").unwrap();
        up.write(b"never").unwrap();
        up.abort();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("t/2024/01/02"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.parquet"]);
    }
}
