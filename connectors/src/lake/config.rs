//! Settings of the `parquet` sink.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::component::{SchemaRegistry, Sink};
use sluice_engine::registry::{BuildContext, Capability, Component, Issue, OnlineCheck};
use sluice_engine::units::{parse_bytes, parse_duration};
use sluice_engine::Result;

use super::sink::LakeSink;
use crate::aws::glue::GluePublisher;
use crate::aws::s3::{Encryption, S3Store};
use crate::aws::Access;
use crate::catalog::{Catalog, DatasetRegistry, LocalCatalog, LogCatalog, Publisher};
use crate::store::{LocalStore, ObjectStore};

/// Writes events as Parquet (or gzipped NDJSON) files laid out as SPEC §7.1 says
/// (`<prefix>/<project_id>/<table>/<YYYY>/<MM>/<DD>/`) and registers tables, columns and
/// `mp_date` partitions in a catalog. Files roll on size and age; each commit makes the
/// objects, the catalog and the source positions advance together, so a restart after any
/// crash leaves every event exactly once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The Mixpanel project id: the top folder of the dataset.
    pub project_id: u64,
    /// Where files go.
    pub store: StoreConfig,
    /// Folder prefix inside the store (`s3_prefix`); none by default.
    #[serde(default)]
    pub prefix: String,
    /// Where tables and partitions are registered.
    pub catalog: CatalogConfig,
    /// `parquet` (default) or `json` (gzipped NDJSON, `time` in epoch seconds; SPEC §12 D2, D9).
    #[serde(default)]
    pub format: DataFormat,
    /// Parquet compression: `snappy` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// When files roll.
    #[serde(default)]
    pub roll: RollConfig,
    /// Where dead letters go: `_dead_letters/<sink>/` in the store (default), or a Kafka topic.
    #[serde(default)]
    pub dead_letters: DeadLetterConfig,
    /// The project token: the external id sent when assuming the S3 and Glue roles (SPEC §9.1).
    #[serde(default)]
    pub project_token: Option<String>,
}

/// Where dead letters go.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// `<prefix>/_dead_letters/<sink>/dead-<manifest>.ndjson` in the object store, committed
    /// with the data: exactly once.
    #[default]
    Store,
    /// One JSON message per dead letter (reason, source, partition, offset, raw), keyed by
    /// `source/partition/offset`, acknowledged before the commit that covers it finishes: at
    /// least once (a crash between the two sends them again, with the same keys).
    Kafka {
        brokers: String,
        topic: String,
        /// librdkafka settings passed through (`security.protocol`, `sasl.*`...).
        #[serde(default)]
        options: crate::kafka::ClientOptions,
    },
}

/// The object store.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A local directory.
    Local {
        /// The directory (created if missing).
        path: PathBuf,
    },
    /// An S3 bucket (or an S3-compatible store with `endpoint`). Credentials come from the
    /// default chain (environment, profile, instance role).
    S3 {
        bucket: String,
        region: String,
        /// A custom endpoint, e.g. `http://127.0.0.1:5000`; path-style addressing is used.
        #[serde(default)]
        endpoint: Option<String>,
        /// `none` (bucket default), `aes` (AES256) or `kms` (SPEC §9.4).
        #[serde(default)]
        encryption: Encryption,
        /// The KMS key (ARN or id) with `encryption: kms`; the AWS-managed key without it.
        #[serde(default)]
        kms_key_id: Option<String>,
        /// A role to assume for S3 (`s3_role`), with the project token as external id.
        #[serde(default)]
        role: Option<String>,
        /// How long an assumed role's session lasts; it is renewed before it ends (AWS allows
        /// 15m to the role's maximum, at most 12h).
        #[serde(default = "default_role_session")]
        role_session: String,
        /// Multipart uploads' part size (objects of two parts or more go up in parts); AWS
        /// needs at least 5MiB.
        #[serde(default = "default_part_size")]
        part_size: String,
    },
}

fn default_part_size() -> String {
    "8MiB".into()
}

fn default_role_session() -> String {
    "1h".into()
}

/// AWS's shortest and longest AssumeRole sessions.
const AWS_SESSIONS: (Duration, Duration) = (Duration::from_secs(900), Duration::from_secs(43_200));

/// The catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CatalogConfig {
    /// The embedded catalog: one SQLite file that several local processes can share.
    Local {
        /// The catalog file (created if missing).
        path: PathBuf,
        /// The database the tables belong to (`glue_database`).
        database: String,
    },
    /// AWS Glue: tables and `mp_date` partitions published as SPEC §8 says, for Athena,
    /// Redshift Spectrum and Spark. The commit protocol's own state (schema registry,
    /// manifests, positions, owners) is kept in the store, under
    /// `<prefix>/<project_id>/_sluice/state/`, as a log of conditional writes that workers on
    /// any machines share; or, with `state`, in an embedded catalog file.
    Glue {
        /// The Glue database; it must exist (sluice never creates it).
        database: String,
        /// Glue's region: the bucket's (SPEC §8.2).
        region: String,
        #[serde(default)]
        endpoint: Option<String>,
        /// Put in front of Glue table names only, not folders (SPEC §12 D11).
        #[serde(default)]
        table_prefix: String,
        /// An embedded catalog file for the commit state instead of the store: only workers
        /// that share this file system can share it.
        #[serde(default)]
        state: Option<PathBuf>,
        /// A role to assume for Glue (`glue_role`), with the project token as external id; it
        /// may be the S3 role.
        #[serde(default)]
        role: Option<String>,
        /// How long an assumed role's session lasts; it is renewed before it ends.
        #[serde(default = "default_role_session")]
        role_session: String,
    },
}

impl CatalogConfig {
    fn database(&self) -> &str {
        match self {
            CatalogConfig::Local { database, .. } | CatalogConfig::Glue { database, .. } => {
                database
            }
        }
    }
    /// The embedded catalog file holding the commit state, if the state is not in the store.
    fn state_path(&self) -> Option<&PathBuf> {
        match self {
            CatalogConfig::Local { path, .. } => Some(path),
            CatalogConfig::Glue { state, .. } => state.as_ref(),
        }
    }
}

/// The files' format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    #[default]
    Parquet,
    Json,
}

impl DataFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Parquet => "parquet",
            DataFormat::Json => "json",
        }
    }
    /// The file name extension (SPEC §12 D8).
    pub fn extension(self) -> &'static str {
        match self {
            DataFormat::Parquet => "parquet",
            DataFormat::Json => "json.gz",
        }
    }
}

/// Parquet compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Snappy,
    Zstd,
    None,
}

/// When files roll. Every roll on age commits what the sink holds, even when no new event
/// arrives.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// A window's file is closed once this big (estimated before compression).
    #[serde(default = "default_max_file_size")]
    pub max_file_size: String,
    /// Everything held is committed this long after its first event arrived.
    #[serde(default = "default_max_age")]
    pub max_age: String,
    /// Everything held is committed early when buffers reach this size.
    #[serde(default = "default_max_buffer")]
    pub max_buffer: String,
    /// A window's rows are encoded into its file, and sent on their way to the store, each
    /// time they reach this size (estimated before compression): a file is written while it
    /// grows and never held whole. A table wider than 2,048 columns gets row groups larger in
    /// proportion (see `Roll::row_group_bytes_for`).
    #[serde(default = "default_row_group_size")]
    pub row_group_size: String,
}

fn default_max_file_size() -> String {
    "128MiB".into()
}
fn default_max_age() -> String {
    "60s".into()
}
fn default_max_buffer() -> String {
    "512MiB".into()
}
fn default_row_group_size() -> String {
    "32MiB".into()
}

impl Default for RollConfig {
    fn default() -> Self {
        RollConfig {
            max_file_size: default_max_file_size(),
            max_age: default_max_age(),
            max_buffer: default_max_buffer(),
            row_group_size: default_row_group_size(),
        }
    }
}

/// The roll settings, parsed.
#[derive(Clone, Copy, Debug)]
pub struct Roll {
    pub max_file_bytes: u64,
    pub max_age: Duration,
    pub max_buffer_bytes: u64,
    pub row_group_bytes: u64,
}

/// The width up to which a row group ends at `roll.row_group_size`.
pub const ROW_GROUP_COLUMNS: u64 = 2048;

impl Roll {
    /// Where a row group of a table of `columns` columns ends: `row_group_bytes` up to
    /// [`ROW_GROUP_COLUMNS`] columns. Past that, larger in proportion to the width (at most half
    /// the buffer: a commit empties the buffer anyway), then evened out so that a file of
    /// `max_file_bytes` holds a whole number of them: a file ends at that size whatever its
    /// row group holds, and a last group of a few values would pay every column's fixed cost
    /// again. Never below `row_group_bytes`.
    ///
    /// Parquet has every column in every row group: each costs a chunk (a page of nulls, its
    /// statistics and page index) and a footer entry, even when none of the group's rows has a
    /// value in it. With row groups of a fixed size, a table's cost would grow with its events
    /// times its columns; with a size that grows with the width, each column's fixed cost is
    /// spread over at least as many bytes of values as at 2,048 columns, and the cost stays
    /// linear in each. The memory a window holds grows with the width alone.
    pub fn row_group_bytes_for(&self, columns: usize) -> u64 {
        let columns = columns as u64;
        if columns <= ROW_GROUP_COLUMNS {
            return self.row_group_bytes;
        }
        let wide = (self.row_group_bytes as u128 * columns as u128 / ROW_GROUP_COLUMNS as u128)
            .min(u64::MAX as u128) as u64;
        let wide = wide.min(self.max_buffer_bytes / 2).max(1);
        let per_file = (self.max_file_bytes / wide).max(1);
        self.max_file_bytes
            .div_ceil(per_file)
            .max(self.row_group_bytes)
    }
}

impl RollConfig {
    pub fn parse(&self) -> std::result::Result<Roll, Vec<Issue>> {
        let mut issues = Vec::new();
        let bytes = |key: &str, v: &str, issues: &mut Vec<Issue>| match parse_bytes(v) {
            Ok(0) => {
                issues.push(Issue::at(
                    key,
                    format!("`{v}` must be above zero"),
                    "write e.g. 128MiB",
                ));
                0
            }
            Ok(n) => n,
            Err(m) => {
                issues.push(Issue::at(key, m, "write e.g. 128MiB"));
                0
            }
        };
        let max_file_bytes = bytes("roll.max_file_size", &self.max_file_size, &mut issues);
        let max_buffer_bytes = bytes("roll.max_buffer", &self.max_buffer, &mut issues);
        let row_group_bytes = bytes("roll.row_group_size", &self.row_group_size, &mut issues);
        let max_age = match parse_duration(&self.max_age) {
            Ok(d) if d.is_zero() => {
                issues.push(Issue::at(
                    "roll.max_age",
                    "max_age must be above zero",
                    "write e.g. 60s",
                ));
                d
            }
            Ok(d) => d,
            Err(m) => {
                issues.push(Issue::at("roll.max_age", m, "write e.g. 60s or 5m"));
                Duration::ZERO
            }
        };
        if issues.is_empty() {
            Ok(Roll {
                max_file_bytes,
                max_age,
                max_buffer_bytes,
                row_group_bytes,
            })
        } else {
            Err(issues)
        }
    }
}

/// An opened dataset: store, catalog, and where its tables live.
pub struct Dataset {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub database: String,
    /// `<prefix>/<project_id>/` (no leading slash).
    pub base_key: String,
    pub prefix: String,
    /// Glue, when the catalog is published there.
    pub publisher: Option<Arc<dyn Publisher>>,
}

impl ParquetSinkConfig {
    fn access(
        &self,
        region: &str,
        endpoint: &Option<String>,
        role: &Option<String>,
        session: &str,
    ) -> Access {
        Access {
            region: region.to_string(),
            endpoint: endpoint.clone().filter(|e| !e.is_empty()),
            role: role.clone().filter(|r| !r.is_empty()),
            external_id: self.project_token.clone().filter(|t| !t.is_empty()),
            session: parse_duration(session).unwrap_or(crate::aws::SESSION),
        }
    }

    /// `<prefix>/<project_id>/` (no leading slash): where the dataset's keys start.
    fn base_key(&self) -> String {
        match self.prefix.trim_matches('/') {
            "" => format!("{}/", self.project_id),
            prefix => format!("{prefix}/{}/", self.project_id),
        }
    }

    /// Where the commit state's log is kept in the store, when it is.
    fn state_root(&self) -> String {
        format!("{}_sluice/state/", self.base_key())
    }

    /// The commit state: the embedded catalog file, or the log in `store`.
    fn open_state(&self, store: &Arc<dyn ObjectStore>) -> Result<Arc<dyn Catalog>> {
        Ok(match self.catalog.state_path() {
            Some(path) => Arc::new(LocalCatalog::open(path)?),
            None => LogCatalog::shared(store.clone(), &self.state_root())?,
        })
    }

    fn open_store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(match &self.store {
            StoreConfig::Local { path } => Arc::new(LocalStore::open(path)?),
            StoreConfig::S3 {
                bucket,
                region,
                endpoint,
                encryption,
                kms_key_id,
                role,
                role_session,
                part_size,
            } => Arc::new(S3Store::open(
                bucket,
                &self.access(region, endpoint, role, role_session),
                *encryption,
                kms_key_id.clone(),
                parse_bytes(part_size).unwrap_or(crate::aws::s3::DEFAULT_PART_SIZE as u64) as usize,
            )?),
        })
    }

    /// Opens the store and the catalog.
    pub fn open_dataset(&self) -> Result<Dataset> {
        let store = self.open_store()?;
        let catalog = self.open_state(&store)?;
        let database = self.catalog.database().to_string();
        let publisher: Option<Arc<dyn Publisher>> = match &self.catalog {
            CatalogConfig::Local { .. } => None,
            CatalogConfig::Glue {
                database,
                region,
                endpoint,
                table_prefix,
                role,
                role_session,
                ..
            } => Some(Arc::new(GluePublisher::open(
                database,
                &self.access(region, endpoint, role, role_session),
                table_prefix,
            )?)),
        };
        catalog.ensure_database(&database)?;
        let prefix = self.prefix.trim_matches('/').to_string();
        let base_key = self.base_key();
        Ok(Dataset {
            store,
            catalog,
            database,
            base_key,
            prefix,
            publisher,
        })
    }
}

impl Component for ParquetSinkConfig {
    fn check_online(&self) -> Vec<OnlineCheck> {
        let mut checks = Vec::new();
        if let StoreConfig::S3 {
            bucket,
            region,
            endpoint,
            encryption,
            kms_key_id,
            role,
            role_session,
            ..
        } = &self.store
        {
            checks.extend(crate::aws::online::check_s3(
                &self.access(region, endpoint, role, role_session),
                bucket,
                &self.base_key(),
                *encryption,
                kms_key_id.as_deref(),
                self.catalog.state_path().is_none(),
            ));
        }
        if let CatalogConfig::Glue {
            database,
            region,
            endpoint,
            role,
            role_session,
            ..
        } = &self.catalog
        {
            checks.extend(crate::aws::online::check_glue(
                &self.access(region, endpoint, role, role_session),
                database,
            ));
        }
        checks
    }

    fn validate(&self) -> Vec<Issue> {
        let mut issues = self.roll.parse().err().unwrap_or_default();
        let database = self.catalog.database();
        if let StoreConfig::S3 {
            bucket,
            encryption,
            kms_key_id,
            part_size,
            endpoint,
            ..
        } = &self.store
        {
            match parse_bytes(part_size) {
                Err(m) => issues.push(Issue::at("store.part_size", m, "write e.g. 8MiB")),
                // An S3-compatible store (a custom endpoint) may take smaller parts.
                Ok(n)
                    if n < crate::aws::s3::AWS_MIN_PART_SIZE as u64
                        && endpoint.as_deref().is_none_or(str::is_empty) =>
                {
                    issues.push(Issue::at(
                        "store.part_size",
                        format!("`{part_size}` is below S3's smallest part, 5MiB"),
                        "write 5MiB or more",
                    ))
                }
                Ok(0) => issues.push(Issue::at(
                    "store.part_size",
                    "the part size must be above zero",
                    "write e.g. 8MiB",
                )),
                Ok(_) => {}
            }
            if bucket.is_empty() || bucket.contains('/') {
                issues.push(Issue::at(
                    "store.bucket",
                    format!("`{bucket}` is not a bucket name"),
                    "name the bucket alone; folders go in `prefix`",
                ));
            }
            if kms_key_id.is_some() && *encryption != Encryption::Kms {
                issues.push(Issue::at(
                    "store.kms_key_id",
                    "`kms_key_id` is set but `encryption` is not `kms`",
                    "set `encryption: kms`, or remove the key id",
                ));
            }
        }
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            issues.push(Issue::at(
                "catalog.database",
                format!("`{database}` is not a valid database name"),
                "use lowercase letters, digits and _",
            ));
        }
        if let DeadLetterConfig::Kafka {
            brokers,
            topic,
            options,
        } = &self.dead_letters
        {
            if brokers.trim().is_empty() || topic.trim().is_empty() {
                issues.push(Issue::at(
                    "dead_letters.kafka",
                    "dead letters to Kafka need `brokers` and `topic`",
                    "name both, e.g. brokers: 127.0.0.1:9092, topic: sluice-dead-letters",
                ));
            }
            for (key, msg, hint) in options.problems() {
                issues.push(Issue::at(
                    &format!("dead_letters.kafka.options.{key}"),
                    msg,
                    hint,
                ));
            }
        }
        let sessions = [
            match &self.store {
                StoreConfig::S3 {
                    role_session,
                    endpoint,
                    ..
                } => Some(("store.role_session", role_session, endpoint)),
                StoreConfig::Local { .. } => None,
            },
            match &self.catalog {
                CatalogConfig::Glue {
                    role_session,
                    endpoint,
                    ..
                } => Some(("catalog.role_session", role_session, endpoint)),
                CatalogConfig::Local { .. } => None,
            },
        ];
        for (key, session, endpoint) in sessions.into_iter().flatten() {
            // A custom endpoint (a test server) may take shorter sessions than AWS.
            let aws = endpoint.as_deref().is_none_or(str::is_empty);
            match parse_duration(session) {
                Err(m) => issues.push(Issue::at(key, m, "write e.g. 1h")),
                Ok(d) if d.is_zero() => {
                    issues.push(Issue::at(key, "the session must last", "write e.g. 1h"))
                }
                Ok(d) if aws && (d < AWS_SESSIONS.0 || d > AWS_SESSIONS.1) => {
                    issues.push(Issue::at(
                        key,
                        format!("`{session}` is outside AWS's sessions, 15m to 12h"),
                        "write e.g. 1h (and at most the role's maximum session duration)",
                    ))
                }
                Ok(_) => {}
            }
        }
        let roles = [
            match &self.store {
                StoreConfig::S3 { role, .. } => ("store.role", role),
                StoreConfig::Local { .. } => ("store.role", &None),
            },
            match &self.catalog {
                CatalogConfig::Glue { role, .. } => ("catalog.role", role),
                CatalogConfig::Local { .. } => ("catalog.role", &None),
            },
        ];
        for (key, role) in roles {
            if let Some(r) = role.as_deref().filter(|r| !r.is_empty()) {
                if !(r.starts_with("arn:") && r.contains(":role/")) {
                    issues.push(Issue::at(
                        key,
                        format!("`{r}` is not an IAM role ARN"),
                        "write it like arn:aws:iam::123456789012:role/mixpanel-export",
                    ));
                }
            }
        }
        if self.prefix.contains("//") || self.prefix.contains("..") {
            issues.push(Issue::at(
                "prefix",
                "the prefix has `//` or `..`",
                "write it like exports/mixpanel",
            ));
        }
        issues
    }
    fn requires(&self) -> &'static [Capability] {
        &[Capability::Columns, Capability::Dates]
    }
    fn describe(&self) -> String {
        let store = match &self.store {
            StoreConfig::Local { path } => path.display().to_string(),
            StoreConfig::S3 { bucket, .. } => format!("s3://{bucket}/{}", self.prefix),
        };
        let catalog = match &self.catalog {
            CatalogConfig::Local { database, .. } => format!("database {database}"),
            CatalogConfig::Glue { database, .. } => format!("Glue database {database}"),
        };
        format!("{store} as {} -> {catalog}", self.format.as_str())
    }
    fn dataset(&self) -> Option<String> {
        let state = match (self.catalog.state_path(), &self.store) {
            (Some(path), _) => format!("local:{}", path.display()),
            (None, StoreConfig::S3 { bucket, .. }) => {
                format!("s3://{bucket}/{}", self.state_root())
            }
            (None, StoreConfig::Local { path }) => {
                format!("{}/{}", path.display(), self.state_root())
            }
        };
        Some(format!("{state}#{}", self.catalog.database()))
    }
    fn open_schema_registry(&self) -> Option<Result<Arc<dyn SchemaRegistry>>> {
        // The registry lives in the commit state: an embedded file, where the store is only
        // named; or the store's log, shared with the sink's catalog in this process.
        let open = || -> Result<Arc<dyn SchemaRegistry>> {
            let (base_url, catalog): (String, Arc<dyn Catalog>) = match self.catalog.state_path() {
                Some(path) => {
                    let base_url = match &self.store {
                        StoreConfig::Local { path } => {
                            LocalStore::open(path)?.url(&self.base_key())
                        }
                        StoreConfig::S3 { bucket, .. } => {
                            format!("s3://{bucket}/{}", self.base_key())
                        }
                    };
                    (base_url, Arc::new(LocalCatalog::open(path)?))
                }
                None => {
                    let store = self.open_store()?;
                    (store.url(&self.base_key()), self.open_state(&store)?)
                }
            };
            let database = self.catalog.database().to_string();
            catalog.ensure_database(&database)?;
            Ok(Arc::new(DatasetRegistry {
                catalog,
                database,
                base_url,
                format: self.format.as_str().to_string(),
            }))
        };
        Some(open())
    }
    fn build_sink(&self, cx: &BuildContext) -> Result<Box<dyn Sink>> {
        let roll = self.roll.parse().map_err(|issues| {
            sluice_engine::EngineError::config(
                issues
                    .iter()
                    .map(|i| i.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                "fix the roll settings",
            )
        })?;
        let mut sink = LakeSink::new(
            cx.name.clone(),
            self.open_dataset()?,
            roll,
            self.format,
            self.compression,
            cx.stats.clone(),
        );
        if let DeadLetterConfig::Kafka {
            brokers,
            topic,
            options,
        } = &self.dead_letters
        {
            crate::kafka::produce::ensure_topic(brokers, options, topic, None)?;
            sink.dead_letters_to(crate::kafka::produce::TopicProducer::new(
                brokers, options, topic,
            )?);
        }
        Ok(Box::new(sink))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_groups_grow_with_the_width_past_2048_columns_a_whole_number_to_a_file() {
        let mib = 1u64 << 20;
        let roll = Roll {
            max_file_bytes: 128 * mib,
            max_age: Duration::from_secs(60),
            max_buffer_bytes: 512 * mib,
            row_group_bytes: 32 * mib,
        };
        assert_eq!(roll.row_group_bytes_for(0), 32 * mib);
        assert_eq!(roll.row_group_bytes_for(2048), 32 * mib);
        // 32 MiB and a little more would leave a last group of almost nothing: three to a file.
        assert_eq!(roll.row_group_bytes_for(2049), (128 * mib).div_ceil(3));
        // 48 MiB: two to a file.
        assert_eq!(roll.row_group_bytes_for(3072), 64 * mib);
        assert_eq!(roll.row_group_bytes_for(8192), 128 * mib);
        assert_eq!(roll.row_group_bytes_for(8109), 128 * mib);
        // Past the file: the file's size.
        assert_eq!(roll.row_group_bytes_for(100_000), 128 * mib);
        // Half the buffer bounds it before the file does.
        let big_files = Roll {
            max_file_bytes: 1024 * mib,
            ..roll
        };
        assert_eq!(big_files.row_group_bytes_for(100_000), 256 * mib);
        // Never below the configured size, even with a buffer smaller than twice that.
        let small = Roll {
            max_buffer_bytes: 40 * mib,
            ..roll
        };
        assert_eq!(small.row_group_bytes_for(8192), 32 * mib);
        // Not with files smaller than a row group either.
        let small_files = Roll {
            max_file_bytes: 16 * mib,
            ..roll
        };
        assert_eq!(small_files.row_group_bytes_for(8192), 32 * mib);
    }
}
