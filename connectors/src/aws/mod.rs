//! AWS: S3 as an object store and Glue as the catalog that query engines read.
//!
//! The SDK is async; the sink is a plain thread. Calls run on one small shared tokio runtime
//! and the caller blocks on them. Retries (throttling, 5xx, dropped connections) are the
//! SDK's standard mode with backoff, with more attempts than its default.

pub mod glue;
pub mod s3;

use std::sync::OnceLock;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

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

/// Shared SDK settings: region, an optional endpoint (S3-compatible stores, local test
/// servers), credentials from the default chain.
pub(crate) fn sdk_config(region: &str, endpoint: Option<&str>) -> Result<SdkConfig> {
    let rt = runtime()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(8));
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    Ok(rt.block_on(loader.load()))
}

/// An SDK error with its service message, for people.
pub(crate) fn describe<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use std::error::Error;
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
