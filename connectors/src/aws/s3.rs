//! S3 as an object store: server-side encryption on every write (SPEC §9.4), multipart
//! uploads for large objects, path-style addressing for custom endpoints.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::{EngineError, Result};

use super::{describe, runtime, sdk_config, Access};
use crate::store::ObjectStore;

/// `s3_encryption` (SPEC §9.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// No header: the bucket's default applies.
    #[default]
    None,
    /// `AES256`.
    Aes,
    /// `aws:kms`, with `kms_key_id` if given (else the AWS-managed `aws/s3` key).
    Kms,
}

/// The part size of multipart uploads unless configured; objects of two parts or more go up
/// in parts.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// AWS's smallest part (all but the last); S3-compatible stores may accept smaller ones.
pub const AWS_MIN_PART_SIZE: usize = 5 << 20;

pub struct S3Store {
    client: Client,
    bucket: String,
    encryption: Encryption,
    kms_key_id: Option<String>,
    part_size: usize,
}

impl S3Store {
    pub fn open(
        bucket: &str,
        access: &Access,
        encryption: Encryption,
        kms_key_id: Option<String>,
        part_size: usize,
    ) -> Result<Self> {
        let sdk = sdk_config(access, "S3")?;
        let region = &access.region;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
        if access.endpoint.is_some() {
            conf = conf.force_path_style(true);
        }
        let client = Client::from_conf(conf.build());
        let store = S3Store {
            client,
            bucket: bucket.to_string(),
            encryption,
            kms_key_id,
            part_size: part_size.max(1),
        };
        // Fail before anything runs when the bucket cannot be reached.
        runtime()?
            .block_on(store.client.head_bucket().bucket(bucket).send())
            .map_err(|e| {
                EngineError::config(
                    format!("S3 bucket `{bucket}` in {region}: {}", describe(&e)),
                    "check the bucket name, the region, the endpoint and the credentials (s3:ListBucket)",
                )
            })?;
        Ok(store)
    }

    fn sse(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match self.encryption {
            Encryption::None => (None, None),
            Encryption::Aes => (Some(ServerSideEncryption::Aes256), None),
            Encryption::Kms => (Some(ServerSideEncryption::AwsKms), self.kms_key_id.clone()),
        }
    }

    async fn put_multipart(&self, key: &str, data: &[u8]) -> Result<()> {
        let (sse, kms) = self.sse();
        let fail = |what: &str, e: String| {
            EngineError::external(format!("S3 {what} s3://{}/{key}", self.bucket), e)
        };
        let up = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .send()
            .await
            .map_err(|e| fail("starting a multipart upload of", describe(&e)))?;
        let id = up
            .upload_id()
            .ok_or_else(|| fail("starting a multipart upload of", "no upload id".into()))?
            .to_string();
        let mut parts = Vec::new();
        let mut result = Ok(());
        for (i, chunk) in data.chunks(self.part_size).enumerate() {
            let n = i as i32 + 1;
            match self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
            {
                Ok(p) => {
                    parts.push(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(p.e_tag().map(str::to_string))
                            .build(),
                    );
                    crate::failpoints::crash_point!("s3.multipart.part");
                }
                Err(e) => {
                    result = Err(fail("uploading a part of", describe(&e)));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| fail("completing the upload of", describe(&e)));
        }
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
        }
        result
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let rt = runtime()?;
        if data.len() >= 2 * self.part_size {
            return rt.block_on(self.put_multipart(key, data));
        }
        let (sse, kms) = self.sse();
        rt.block_on(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(data.to_vec()))
                .set_server_side_encryption(sse)
                .set_ssekms_key_id(kms)
                .send(),
        )
        .map(|_| ())
        .map_err(|e| {
            EngineError::external(format!("S3 put s3://{}/{key}", self.bucket), describe(&e))
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        runtime()?
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| {
                EngineError::external(
                    format!("S3 delete s3://{}/{key}", self.bucket),
                    describe(&e),
                )
            })
    }

    fn exists(&self, key: &str) -> Result<bool> {
        match runtime()?.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(EngineError::external(
                format!("S3 head s3://{}/{key}", self.bucket),
                describe(&e),
            )),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let fail =
            |e: String| EngineError::external(format!("S3 get s3://{}/{key}", self.bucket), e);
        runtime()?.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| fail(describe(&e)))?;
            let body = out.body.collect().await.map_err(|e| fail(e.to_string()))?;
            Ok(body.into_bytes().to_vec())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let rt = runtime()?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = rt
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| {
                    EngineError::external(
                        format!("S3 list s3://{}/{prefix}", self.bucket),
                        describe(&e),
                    )
                })?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or_default().max(0) as u64));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}
