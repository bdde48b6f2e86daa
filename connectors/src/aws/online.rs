//! `sluice validate --online` for S3 and Glue: every call the sink will make, tried once
//! without touching the data (a probe object under `_sluice/` is written, read and deleted),
//! and for each refusal the IAM statement that would allow it.

use aws_sdk_glue::Client as Glue;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client as S3;
use aws_sdk_sts::Client as Sts;
use serde_json::json;

use sluice_engine::registry::OnlineCheck;

use super::s3::Encryption;
use super::{assumed, base_config, chain, runtime, Access};

/// The KMS actions a key must grant for SSE-KMS (SPEC §9.4).
const KMS_ACTIONS: [&str; 7] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
];

/// Refused for want of permission (as opposed to missing, unreachable or malformed).
fn denied<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let code = e.code().unwrap_or_default();
    code.contains("AccessDenied")
        || code == "Forbidden"
        || code == "UnauthorizedOperation"
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
}

fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => chain(e),
    }
}

fn statement(actions: &[&str], resource: serde_json::Value) -> String {
    let action = if actions.len() == 1 {
        json!(actions[0])
    } else {
        json!(actions)
    };
    json!({"Effect": "Allow", "Action": action, "Resource": resource}).to_string()
}

/// The ARN partition of a region: `aws`, `aws-cn` or `aws-us-gov`.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The configuration to call `service` with, and whose policy grants its permissions: the
/// default chain's identity, or the role assumed on top of it. Records the identity and the
/// assumption as checks; `None` when neither works.
fn credentials(
    access: &Access,
    service: &str,
    checks: &mut Vec<OnlineCheck>,
) -> Option<(aws_config::SdkConfig, String)> {
    let rt = runtime().ok()?;
    let base = match base_config(access) {
        Ok(b) => b,
        Err(e) => {
            checks.push(OnlineCheck::failed(
                format!("credentials for {service}"),
                e.to_string(),
            ));
            return None;
        }
    };
    let me = rt.block_on(Sts::new(&base).get_caller_identity().send());
    let me = match me {
        Ok(id) => id.arn().unwrap_or_default().to_string(),
        Err(e) => {
            checks.push(OnlineCheck::failed(
                format!("the engine's credentials for {service} (sts:GetCallerIdentity)"),
                describe(&e),
            ));
            return None;
        }
    };
    let Some(role) = &access.role else {
        checks.push(OnlineCheck::ok(format!("{service} as {me}")));
        return Some((base, me));
    };
    let what = format!("sts:AssumeRole on {role} for {service} as {me}");
    match assumed(&base, access, role) {
        Ok(conf) => {
            checks.push(OnlineCheck::ok(what));
            Some((conf, role.clone()))
        }
        Err(detail) => {
            let mut trust = json!({
                "Effect": "Allow",
                "Principal": {"AWS": me},
                "Action": "sts:AssumeRole",
            });
            if let Some(id) = &access.external_id {
                trust["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
            }
            checks.push(OnlineCheck::failed(what, detail).missing(format!(
                "in the trust policy of {role}:\n  {trust}\nand in the policy of {me}:\n  {}",
                statement(&["sts:AssumeRole"], json!(role))
            )));
            None
        }
    }
}

/// Bucket listing, and a probe object written (with the sink's encryption), read back and
/// deleted under `<base_key>_sluice/`.
pub fn check_s3(
    access: &Access,
    bucket: &str,
    base_key: &str,
    encryption: Encryption,
    kms_key_id: Option<&str>,
    state_in_bucket: bool,
) -> Vec<OnlineCheck> {
    let mut checks = Vec::new();
    let Some((conf, who)) = credentials(access, "S3", &mut checks) else {
        return checks;
    };
    let statement = |actions: &[&str], resource: serde_json::Value| {
        format!(
            "in the policy of {who}:\n  {}",
            statement(actions, resource)
        )
    };
    let Ok(rt) = runtime() else { return checks };
    let mut b = aws_sdk_s3::config::Builder::from(&conf);
    if access.endpoint.is_some() {
        b = b.force_path_style(true);
    }
    let s3 = S3::from_conf(b.build());
    let arn = format!("arn:{}:s3:::{bucket}", partition(&access.region));

    let what = format!("s3:ListBucket on {bucket} ({})", access.region);
    match rt.block_on(
        s3.list_objects_v2()
            .bucket(bucket)
            .prefix(base_key)
            .max_keys(1)
            .send(),
    ) {
        Ok(_) => checks.push(OnlineCheck::ok(what)),
        Err(e) if denied(&e) => checks.push(
            OnlineCheck::failed(what, describe(&e))
                .missing(statement(&["s3:ListBucket"], json!(arn))),
        ),
        Err(e) => {
            checks.push(OnlineCheck::failed(what, describe(&e)));
            return checks;
        }
    }

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let key = format!("{base_key}_sluice/validate-{}-{nanos}", std::process::id());
    let objects = json!(format!("{arn}/*"));
    let mut put = s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from_static(b"sluice validate --online\n"));
    match encryption {
        Encryption::None => {}
        Encryption::Aes => put = put.server_side_encryption(ServerSideEncryption::Aes256),
        Encryption::Kms => {
            put = put.server_side_encryption(ServerSideEncryption::AwsKms);
            if let Some(k) = kms_key_id {
                put = put.ssekms_key_id(k);
            }
        }
    }
    let sse = match (encryption, kms_key_id) {
        (Encryption::None, _) => String::new(),
        (Encryption::Aes, _) => " with AES256".into(),
        (Encryption::Kms, None) => " with aws:kms".into(),
        (Encryption::Kms, Some(k)) => format!(" with aws:kms key {k}"),
    };
    let what = format!("s3:PutObject{sse} on {bucket}/{key}");
    match rt.block_on(put.send()) {
        Ok(_) => checks.push(OnlineCheck::ok(what)),
        Err(e) => {
            let detail = describe(&e);
            let check = OnlineCheck::failed(what, detail.clone());
            checks.push(match kms_key_id {
                Some(k) if detail.contains("KMS") => check.missing(format!(
                    "in the policy of {who} and in the key's policy:\n  {}",
                    self::statement(&KMS_ACTIONS, json!(k))
                )),
                _ if denied(&e) => check.missing(statement(&["s3:PutObject"], objects)),
                _ => check,
            });
            // Nothing to read back or delete.
            return checks;
        }
    }
    if state_in_bucket {
        // The commit state's log needs a second create of a key refused.
        let what = format!("conditional writes (If-None-Match: *) refused on {bucket}/{key}");
        let again = rt.block_on(
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from_static(b"sluice validate --online\n"))
                .send(),
        );
        checks.push(match again {
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                OnlineCheck::ok(what)
            }
            Ok(_) => OnlineCheck::failed(
                what,
                "the store overwrote the object: it ignores If-None-Match, which the commit \
                 state in the bucket needs (keep it in a file instead: `catalog.state: PATH`)",
            ),
            Err(e) => OnlineCheck::failed(what, describe(&e)),
        });
    }
    for (action, result) in [
        (
            "s3:GetObject",
            rt.block_on(s3.get_object().bucket(bucket).key(&key).send())
                .map(|_| ())
                .map_err(|e| (denied(&e), describe(&e))),
        ),
        (
            "s3:DeleteObject",
            rt.block_on(s3.delete_object().bucket(bucket).key(&key).send())
                .map(|_| ())
                .map_err(|e| (denied(&e), describe(&e))),
        ),
    ] {
        let what = format!("{action} on {bucket}/{key}");
        checks.push(match result {
            Ok(()) => OnlineCheck::ok(what),
            Err((true, d)) => {
                OnlineCheck::failed(what, d).missing(statement(&[action], objects.clone()))
            }
            Err((false, d)) => OnlineCheck::failed(what, d),
        });
    }
    checks
}

/// The database, and reading its tables. The writes (CreateTable, UpdateTable,
/// BatchCreatePartition...) cannot be tried without changing the catalog; the statement for
/// all of SPEC §8.1 is printed when a read is refused.
pub fn check_glue(access: &Access, database: &str) -> Vec<OnlineCheck> {
    let mut checks = Vec::new();
    let Some((conf, who)) = credentials(access, "Glue", &mut checks) else {
        return checks;
    };
    let Ok(rt) = runtime() else { return checks };
    let glue = Glue::new(&conf);
    let all = statement(
        &[
            "glue:GetDatabase",
            "glue:CreateTable",
            "glue:GetTables",
            "glue:GetTableVersions",
            "glue:UpdateTable",
            "glue:DeleteTable",
            "glue:GetTable",
            "glue:GetPartition",
            "glue:CreatePartition",
            "glue:DeletePartition",
            "glue:UpdatePartition",
            "glue:BatchCreatePartition",
            "glue:GetPartitions",
            "glue:BatchDeletePartition",
            "glue:BatchGetPartition",
        ],
        json!("*"),
    );
    let all = format!("in the policy of {who}:\n  {all}");
    let what = format!("glue:GetDatabase {database} ({})", access.region);
    match rt.block_on(glue.get_database().name(database).send()) {
        Ok(_) => checks.push(OnlineCheck::ok(what)),
        Err(e) if denied(&e) => {
            checks.push(OnlineCheck::failed(what, describe(&e)).missing(all));
            return checks;
        }
        Err(e) => {
            let mut detail = describe(&e);
            if e.code() == Some("EntityNotFoundException") {
                detail.push_str(" (create it in the bucket's region: sluice never creates it)");
            }
            checks.push(OnlineCheck::failed(what, detail));
            return checks;
        }
    }
    let what = format!("glue:GetTables in {database}");
    checks.push(
        match rt.block_on(
            glue.get_tables()
                .database_name(database)
                .max_results(1)
                .send(),
        ) {
            Ok(_) => OnlineCheck::ok(what),
            Err(e) if denied(&e) => OnlineCheck::failed(what, describe(&e)).missing(all),
            Err(e) => OnlineCheck::failed(what, describe(&e)),
        },
    );
    checks
}
