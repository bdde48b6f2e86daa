//! S3 as an object store: server-side encryption on every write (SPEC §9.4), multipart
//! uploads for large objects, path-style addressing for custom endpoints.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::{EngineError, Result};

use super::{describe, runtime, sdk_config, Access};
use crate::store::{ObjectStore, Upload};

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
        // The SDK retries each request up to 8 times with backoff, within a retry quota that
        // is spent by retries and earned back only by successes: made for clients with many
        // requests at once, whose retries could flood a service in trouble. A worker has a
        // few S3 requests at once (two parts in flight, the commit's steps in turn); with the
        // quota, a burst of faults (a minute of throttling) left every later request of the
        // run failing at its first error, and the run failed where waiting would have done.
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).retry_partition(
            aws_sdk_s3::config::retry::RetryPartition::custom("sluice-s3")
                .token_bucket(aws_sdk_s3::config::retry::TokenBucket::unlimited())
                .build(),
        );
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

    fn new_upload(&self, key: &str) -> S3Upload {
        let (sse, kms) = self.sse();
        S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            sse,
            kms,
            part_size: self.part_size,
            buf: Vec::new(),
            full: None,
            id: None,
            in_flight: std::collections::VecDeque::new(),
            parts: Vec::new(),
            written: 0,
        }
    }
}

/// Parts uploading at once per object: the next part is encoded while these go up.
const PARTS_IN_FLIGHT: usize = 2;

/// The most a part's buffer reserves before it is written (four parts of the default 8 MiB,
/// two of 32 MiB): each open file holds one.
const MAX_PART_ROOM: usize = 64 << 20;

type PartResult = std::result::Result<CompletedPart, String>;

/// An object written while it is produced: below two parts it is one PUT at `complete`;
/// beyond, a multipart upload whose parts go up as they fill, and which completes (becomes
/// visible) only at `complete`.
struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    sse: Option<ServerSideEncryption>,
    kms: Option<String>,
    part_size: usize,
    /// The part being filled: room for two parts (at most [`MAX_PART_ROOM`]) from its first
    /// write (grown by doubling, its bytes were copied about once more and twice its pages
    /// faulted in: a fifth of a W2 run's page faults). Memory not yet written is only
    /// reserved, not resident.
    buf: Vec<u8>,
    /// A whole part held back until more follows, so that the last part is never a tiny one.
    full: Option<Vec<u8>>,
    id: Option<String>,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<PartResult>>,
    parts: Vec<CompletedPart>,
    written: u64,
}

impl S3Upload {
    fn fail(&self, what: &str, e: String) -> EngineError {
        EngineError::external(format!("S3 {what} s3://{}/{}", self.bucket, self.key), e)
    }

    fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        let up = runtime()?
            .block_on(
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .set_server_side_encryption(self.sse.clone())
                    .set_ssekms_key_id(self.kms.clone())
                    .send(),
            )
            .map_err(|e| self.fail("starting a multipart upload of", describe(&e)))?;
        let id = up
            .upload_id()
            .ok_or_else(|| self.fail("starting a multipart upload of", "no upload id".into()))?
            .to_string();
        self.id = Some(id.clone());
        Ok(id)
    }

    /// Sends `data` as the next part, in the background; waits while too many are in flight.
    fn send_part(&mut self, data: Vec<u8>) -> Result<()> {
        let id = self.upload_id()?;
        let n = (self.parts.len() + self.in_flight.len()) as i32 + 1;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(data));
        let task = runtime()?.spawn(async move {
            let p = req.send().await.map_err(|e| describe(&e))?;
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(p.e_tag().map(str::to_string))
                .build())
        });
        self.in_flight.push_back(task);
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.wait_part()?;
        }
        Ok(())
    }

    /// Waits for the oldest part in flight.
    fn wait_part(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let done = runtime()?
            .block_on(task)
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match done {
            Ok(p) => {
                self.parts.push(p);
                crate::failpoints::crash_point!("s3.multipart.part");
                Ok(())
            }
            Err(e) => Err(self.fail("uploading a part of", e)),
        }
    }

    /// What is left to send at the end, in one piece: the held part and the one being filled.
    fn rest(&mut self) -> Vec<u8> {
        let tail = std::mem::take(&mut self.buf);
        match self.full.take() {
            None => tail,
            Some(mut full) => {
                full.extend_from_slice(&tail);
                full
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        if self.id.is_none() {
            let body = self.rest();
            return runtime()?
                .block_on(
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&self.key)
                        .body(ByteStream::from(body))
                        .set_server_side_encryption(self.sse.clone())
                        .set_ssekms_key_id(self.kms.clone())
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| self.fail("put", describe(&e)));
        }
        let last = self.rest();
        if !last.is_empty() {
            self.send_part(last)?;
        }
        while !self.in_flight.is_empty() {
            self.wait_part()?;
        }
        let id = self.upload_id()?;
        runtime()?
            .block_on(
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut self.parts)))
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.fail("completing the upload of", describe(&e)))
    }

    fn abort_now(&mut self) {
        for t in self.in_flight.drain(..) {
            t.abort();
        }
        if let (Some(id), Ok(rt)) = (self.id.take(), runtime()) {
            // Best effort: a bucket lifecycle rule aborts what is left.
            let _ = rt.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(id)
                    .send(),
            );
        }
    }
}

impl Upload for S3Upload {
    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        // Parts fill one at a time, each in its own buffer (no bytes moved from one to the
        // next); a full part goes once another has filled, so that every part but the last is
        // `part_size`, the last between one and two of them.
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                // Room for the held part's successor too, should the object end within it:
                // the last piece is then appended without moving the part. Capped: parts of
                // gigabytes (S3 takes up to 5 GiB) grow as they fill past the cap.
                self.buf
                    .reserve_exact(2usize.saturating_mul(self.part_size).min(MAX_PART_ROOM));
            }
            let take = (self.part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                let filled = std::mem::take(&mut self.buf);
                if let Some(part) = self.full.replace(filled) {
                    if let Err(e) = self.send_part(part) {
                        self.abort_now();
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
    fn written(&self) -> u64 {
        self.written
    }
    fn complete(mut self: Box<Self>) -> Result<()> {
        let r = self.finish();
        if r.is_err() {
            self.abort_now();
        }
        r
    }
    fn abort(mut self: Box<Self>) {
        self.abort_now();
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let rt = runtime()?;
        if data.len() >= 2 * self.part_size {
            let mut up = Box::new(self.new_upload(key));
            up.write(data)?;
            return up.complete();
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
        self.get_if_exists(key)?.ok_or_else(|| {
            EngineError::external(
                format!("S3 get s3://{}/{key}", self.bucket),
                "no such object",
            )
        })
    }

    fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let fail =
            |e: String| EngineError::external(format!("S3 get s3://{}/{key}", self.bucket), e);
        runtime()?.block_on(async {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None)
                }
                Err(e) => return Err(fail(describe(&e))),
            };
            let body = out.body.collect().await.map_err(|e| fail(e.to_string()))?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn create(&self, key: &str, data: &[u8]) -> Result<bool> {
        let (sse, kms) = self.sse();
        let rt = runtime()?;
        // 409 (ConditionalRequestConflict): another conditional write of the key was in
        // progress; asked again, S3 answers with who won.
        let mut pause = std::time::Duration::from_millis(20);
        for _ in 0..10 {
            let sent = rt.block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .if_none_match("*")
                    .body(ByteStream::from(data.to_vec()))
                    .set_server_side_encryption(sse.clone())
                    .set_ssekms_key_id(kms.clone())
                    .send(),
            );
            let status = match &sent {
                Ok(_) => return Ok(true),
                Err(e) => e.raw_response().map(|r| r.status().as_u16()),
            };
            match status {
                Some(412) => return Ok(false),
                Some(409) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(500));
                }
                _ => {
                    let e = sent.err().map(|e| describe(&e)).unwrap_or_default();
                    return Err(EngineError::external(
                        format!("S3 conditional put s3://{}/{key}", self.bucket),
                        e,
                    ));
                }
            }
        }
        Err(EngineError::external(
            format!("S3 conditional put s3://{}/{key}", self.bucket),
            "409 ConditionalRequestConflict, ten times",
        ))
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

    fn upload(&self, key: &str) -> Result<Box<dyn Upload>> {
        Ok(Box::new(self.new_upload(key)))
    }
}
