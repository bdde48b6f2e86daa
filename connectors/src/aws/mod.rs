//! AWS: S3 as an object store and Glue as the catalog that query engines read.
//!
//! The SDK is async; the sink is a plain thread. Calls run on one small shared tokio runtime
//! and the caller blocks on them. Retries (throttling, 5xx, dropped connections) are the
//! SDK's standard mode with backoff, with more attempts than its default.

pub mod glue;
pub mod online;
pub mod s3;

use std::sync::OnceLock;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{ProvideCredentials, SharedCredentialsProvider};

use sluice_engine::{EngineError, Result};

/// The runtime AWS calls run on.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aws")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| EngineError::Internal(format!("starting the AWS runtime: {e}")))
}

/// How to reach one AWS service: where, and as whom.
#[derive(Clone, Debug)]
pub struct Access {
    pub region: String,
    /// A custom endpoint (S3-compatible stores, local test servers).
    pub endpoint: Option<String>,
    /// A role to assume (SPEC §9.1); the default credential chain's identity otherwise.
    pub role: Option<String>,
    /// The external id AssumeRole sends: the project token.
    pub external_id: Option<String>,
    /// How long an assumed role's session lasts; the SDK renews it before it ends.
    pub session: std::time::Duration,
}

/// The session asked for unless configured: AWS's default.
pub const SESSION: std::time::Duration = std::time::Duration::from_secs(3600);

/// Shared SDK settings: region, an optional endpoint, credentials from the default chain or,
/// with a role, from STS AssumeRole on top of it. An assumed role's credentials are cached and
/// renewed by the SDK before they expire (no restart); they are assumed once here first, so a
/// trust policy that refuses us fails before anything runs. `service` names what the
/// credentials are for, in errors.
pub(crate) fn sdk_config(access: &Access, service: &str) -> Result<SdkConfig> {
    let base = base_config(access)?;
    match &access.role {
        None => Ok(base),
        Some(role) => {
            assumed(&base, access, role).map_err(|detail| {
                EngineError::config(
                format!("assuming role `{role}` for {service} {}: {detail}", with(access)),
                "the role's trust policy must trust this engine's identity and, when it has an \
                 sts:ExternalId condition, the sink's project_token must equal it; the engine's \
                 identity needs sts:AssumeRole on the role (`sluice validate --online` prints \
                 the statements)",
            )
            })
        }
    }
}

fn with(access: &Access) -> &'static str {
    if access.external_id.is_some() {
        "with the project token as external id"
    } else {
        "without an external id (no project_token)"
    }
}

/// The default chain's identity, in the region and at the endpoint asked for.
pub(crate) fn base_config(access: &Access) -> Result<SdkConfig> {
    let rt = runtime()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(access.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(8));
    if let Some(e) = access.endpoint.as_deref().filter(|e| !e.is_empty()) {
        loader = loader.endpoint_url(e);
    }
    Ok(rt.block_on(loader.load()))
}

/// `base` as the role: assumed once now (the error, for people, when refused), then renewed
/// by the SDK's credentials cache before each session expires.
pub(crate) fn assumed(
    base: &SdkConfig,
    access: &Access,
    role: &str,
) -> std::result::Result<SdkConfig, String> {
    let rt = runtime().map_err(|e| e.to_string())?;
    let mut assume = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(format!("sluice-{}", std::process::id()))
        .session_length(access.session)
        .configure(base);
    if let Some(id) = &access.external_id {
        assume = assume.external_id(id.clone());
    }
    let provider = rt.block_on(assume.build());
    if let Err(e) = rt.block_on(provider.provide_credentials()) {
        return Err(chain(&e));
    }
    Ok(base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// An SDK error with its service message, for people.
pub(crate) fn describe<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    chain(e)
}
