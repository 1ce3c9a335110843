//! Objects in S3 or an S3-compatible server (feature `s3`). S3 holds objects
//! only; arrivals and leases stay in Redis or memory.
//!
//! Keys are `<prefix><job>/<name>` in one bucket. Single assignment uses S3
//! conditional writes (`If-None-Match: *`); objects above the multipart
//! threshold are uploaded in parts. Credentials come from the standard AWS
//! chain (environment, profile, instance or task role) unless the
//! configuration names a static key; secrets are never logged.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::{JobId, ObjectKey, ObjectStore, PutMode, StorageError};

/// A static access key, used instead of the standard credential chain.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000`; `None` for AWS.
    pub endpoint: Option<String>,
    /// The region (any name for most S3-compatible servers).
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Prepended to every key, e.g. `wukong/`.
    pub prefix: String,
    /// Objects at least this large are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of each part (S3 needs at least 5 MiB for all but the last).
    pub part_size: usize,
    /// A static key instead of the standard chain (environment, profile, role).
    pub credentials: Option<S3Credentials>,
}

impl S3Config {
    /// A configuration for `bucket` with defaults: AWS endpoint, `us-east-1`,
    /// virtual-host addressing, no prefix, parts of 16 MiB above 32 MiB.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            prefix: String::new(),
            multipart_threshold: 32 << 20,
            part_size: 16 << 20,
            credentials: None,
        }
    }
}

/// An [`ObjectStore`] on S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    config: S3Config,
    endpoint: String,
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug>(
    error: &SdkError<E, HttpResponse>,
) -> (Option<String>, String) {
    match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let status = service.raw().status().as_u16();
            let message = inner
                .message()
                .map_or_else(|| format!("{inner:?}"), str::to_owned);
            (
                inner.code().map(str::to_owned),
                format!("HTTP {status}: {message}"),
            )
        }
        SdkError::TimeoutError(_) => (None, "timed out".into()),
        SdkError::DispatchFailure(failure) => (None, format!("request not sent: {failure:?}")),
        other => (None, format!("{other:?}")),
    }
}

impl S3Store {
    /// Builds a client from the standard credential chain and checks that the
    /// bucket is reachable, readable and exists.
    pub async fn connect(config: S3Config) -> Result<Self, StorageError> {
        if config.part_size < 5 << 20 {
            return Err(StorageError::InvalidConfig {
                what: "S3 part size",
                detail: format!("{} bytes; S3 needs at least 5 MiB", config.part_size),
            });
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(key) = &config.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.access_key_id.clone(),
                key.secret_access_key.clone(),
                None,
                None,
                "wukong-s3-config",
            ));
        }
        let shared = loader.load().await;
        // Checksums only where S3 requires them: the default streams upload parts
        // with trailing checksums, which several S3-compatible servers reject.
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build();
        let endpoint = format!(
            "{}/{}",
            config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("s3.{}.amazonaws.com", config.region)),
            config.bucket
        );
        let store = Self {
            client: Client::from_conf(s3),
            config,
            endpoint,
        };
        store
            .client
            .head_bucket()
            .bucket(&store.config.bucket)
            .send()
            .await
            .map_err(|e| store.error(&e))?;
        Ok(store)
    }

    /// The bucket's address, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn path(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.config.prefix, key.path())
    }

    fn error<E: ProvideErrorMetadata + std::fmt::Debug>(
        &self,
        error: &SdkError<E, HttpResponse>,
    ) -> StorageError {
        let (code, detail) = describe(error);
        let endpoint = self.endpoint.clone();
        let status = match error {
            SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
            _ => None,
        };
        let forbidden = matches!(
            code.as_deref(),
            Some(
                "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "ExpiredToken"
                    | "Forbidden"
            )
        ) || status == Some(403);
        match error {
            _ if forbidden => StorageError::Unauthorized {
                backend: "s3",
                endpoint,
                detail,
            },
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StorageError::Unavailable {
                backend: "s3",
                endpoint,
                detail,
            },
            _ => StorageError::Backend {
                backend: "s3",
                endpoint,
                detail: format!("{}: {detail}", code.unwrap_or_default()),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        value: Bytes,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        let path = self.path(key);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(&path)
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        let Some(upload_id) = upload.upload_id() else {
            return Err(StorageError::Backend {
                backend: "s3",
                endpoint: self.endpoint.clone(),
                detail: "CreateMultipartUpload returned no upload id".into(),
            });
        };
        let result = async {
            let mut parts = Vec::new();
            for (index, chunk) in value.chunks(self.config.part_size).enumerate() {
                let number = index as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.config.bucket)
                    .key(&path)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(value.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(|e| self.error(&e))?;
                parts.push(CompletedPart::builder().set_e_tag(part.e_tag().map(str::to_owned)).part_number(number).build());
            }
            let mut complete = self
                .client
                .complete_multipart_upload()
                .bucket(&self.config.bucket)
                .key(&path)
                .upload_id(upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
            if mode == PutMode::Create {
                complete = complete.if_none_match("*");
            }
            match complete.send().await {
                Ok(_) => Ok(()),
                // Some S3-compatible servers (moto among them) answer 200 with a
                // differently named XML root that the SDK cannot decode. A 200
                // means the upload completed (and a Create's condition held):
                // check that the object is there with the size that was sent.
                Err(SdkError::ServiceError(service)) if service.raw().status().as_u16() == 200 => {
                    let head = self
                        .client
                        .head_object()
                        .bucket(&self.config.bucket)
                        .key(&path)
                        .send()
                        .await
                        .map_err(|e| self.error(&e))?;
                    if head.content_length() == Some(value.len() as i64) {
                        Ok(())
                    } else {
                        Err(StorageError::Backend {
                            backend: "s3",
                            endpoint: self.endpoint.clone(),
                            detail: format!("multipart upload of {key} answered 200 but the object has another size"),
                        })
                    }
                }
                Err(error) => Err(self.put_error(key, &error)),
            }
        }
        .await;
        if result.is_err() {
            // An abandoned upload only costs storage until the bucket's
            // lifecycle rule; the put's own error is what the caller gets.
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.config.bucket)
                .key(&path)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(error) = aborted {
                eprintln!(
                    "wukong: the abandoned upload of {path} stays until the bucket's lifecycle rule removes it: {}",
                    aws_sdk_s3::error::DisplayErrorContext(error)
                );
            }
        }
        result
    }

    /// A failed conditional write is `KeyExists`; anything else as [`Self::error`].
    fn put_error<E: ProvideErrorMetadata + std::fmt::Debug>(
        &self,
        key: &ObjectKey,
        error: &SdkError<E, HttpResponse>,
    ) -> StorageError {
        let (code, _) = describe(error);
        if matches!(
            code.as_deref(),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        ) {
            return StorageError::KeyExists { key: key.clone() };
        }
        self.error(error)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        let response = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(self.path(key))
            .send()
            .await;
        match response {
            Ok(object) => object
                .body
                .collect()
                .await
                .map(|data| data.into_bytes())
                .map_err(|e| StorageError::Unavailable {
                    backend: "s3",
                    endpoint: self.endpoint.clone(),
                    detail: format!("reading the body of {key} failed: {e}"),
                }),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                Err(StorageError::KeyNotFound { key: key.clone() })
            }
            Err(error) => Err(self.error(&error)),
        }
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        if value.len() >= self.config.multipart_threshold {
            return self.put_multipart(key, value, mode).await;
        }
        let mut request = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(self.path(key))
            .body(ByteStream::from(value));
        if mode == PutMode::Create {
            request = request.if_none_match("*");
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.put_error(key, &e))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(self.path(key))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error(&e))
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(self.path(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(error) => Err(self.error(&error)),
        }
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        let root = format!("{}{job}/", self.config.prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(format!("{root}{prefix}"))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(&e))?;
            for object in page.contents() {
                if let Some(name) = object.key().and_then(|k| k.strip_prefix(&root)) {
                    keys.push(job.key(name)?);
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
