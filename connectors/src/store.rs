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
    /// Objects under `prefix` (a folder ending in `/`), with their sizes.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
    /// The URL of a key or folder, as catalogs record locations.
    fn url(&self, key: &str) -> String;
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
}

impl ObjectStore for LocalStore {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        {
            use std::io::Write;
            let mut f =
                std::fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
            f.write_all(data)
                .context(|| format!("writing {}", tmp.display()))?;
            f.sync_all()
                .context(|| format!("syncing {}", tmp.display()))?;
        }
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
}
