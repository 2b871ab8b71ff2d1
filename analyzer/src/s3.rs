//! Traces on object storage: `s3://bucket/prefix` URLs, through the `object_store` crate.
//! [`open_trace`] opens a local trace directory or a URL (the trace's Parquet files are then read
//! with few range requests: one suffix GET for the footer, then the column chunks of the row
//! groups judging needs, coalesced; see `trace::remote`); [`list_traces`] finds the traces under a URL prefix (every prefix holding a
//! `manifest.json`). Credentials, region and endpoint come from the usual `AWS_*` environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server; plain `http://` endpoints are allowed).
//! The blocking reader calls into a small tokio runtime shared by every worker thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use trace::{RemoteFile, RemoteTrace, Trace, TraceError};

use crate::Error;

/// Opens a trace: a local directory, or an `s3://` URL.
pub fn open_trace(p: &Path) -> Result<Trace, Error> {
    if !is_url(p) {
        let t = Trace::open(p)?;
        for w in t.warnings() {
            eprintln!("warning: {w}");
        }
        return Ok(t);
    }
    let url = p.to_string_lossy();
    let (bucket, prefix) = parse(&url)?;
    let store = store(&bucket, &url)?;
    let t = S3Trace {
        store,
        bucket,
        prefix: prefix.trim_end_matches('/').to_string(),
    };
    Ok(Trace::open_remote(Arc::new(t))?)
}

/// The traces (prefixes holding a `manifest.json`) under an `s3://` URL, in key order.
pub fn list_traces(url: &str) -> Result<Vec<String>, Error> {
    let (bucket, prefix) = parse(url)?;
    let store = store(&bucket, url)?;
    let prefix = prefix.trim_end_matches('/').to_string();
    let key = (!prefix.is_empty()).then(|| Key::from(prefix.as_str()));
    let metas: Vec<object_store::ObjectMeta> =
        block_on(async { store.list(key.as_ref()).try_collect::<Vec<_>>().await })?
            .map_err(|e| remote_error(url, "cannot list", &e))?;
    let mut found: Vec<String> = metas
        .iter()
        .filter_map(|m| {
            let k = m.location.as_ref();
            if k == trace::files::MANIFEST {
                Some(format!("s3://{bucket}"))
            } else {
                k.strip_suffix(&format!("/{}", trace::files::MANIFEST))
                    .map(|dir| format!("s3://{bucket}/{dir}"))
            }
        })
        .collect();
    found.sort();
    // a trace inside a trace is not searched for, as with directories
    let mut out: Vec<String> = Vec::new();
    for f in found {
        if !out.iter().any(|o| f.starts_with(&format!("{o}/"))) {
            out.push(f);
        }
    }
    Ok(out)
}

/// `s3://bucket/some/prefix` -> (`bucket`, `some/prefix`).
fn parse(url: &str) -> Result<(String, String), Error> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::Usage(format!("{url}: not an s3:// URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Usage(format!("{url}: no bucket in the URL")));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-io")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Runtime(format!("cannot start the s3 client runtime: {e}")))
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Error> {
    Ok(runtime()?.block_on(f))
}

/// One client per bucket, shared by every trace and worker.
fn store(bucket: &str, url: &str) -> Result<Arc<dyn ObjectStore>, Error> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut map = stores
        .lock()
        .map_err(|_| Error::Runtime("s3 client cache poisoned".into()))?;
    if let Some(s) = map.get(bucket) {
        return Ok(s.clone());
    }
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_default();
    if endpoint.starts_with("http://") {
        b = b.with_allow_http(true);
    }
    let s: Arc<dyn ObjectStore> = Arc::new(
        b.build()
            .map_err(|e| Error::Runtime(format!("{url}: s3 client configuration: {e}")))?,
    );
    map.insert(bucket.to_string(), s.clone());
    Ok(s)
}

/// An object-store error as an unreadable-trace error naming the object, with a hint for
/// refused credentials.
fn remote_error(what: &str, doing: &str, e: &object_store::Error) -> Error {
    Error::Trace(trace_error(what, doing, e))
}

fn trace_error(what: &str, doing: &str, e: &object_store::Error) -> TraceError {
    let msg = match e {
        object_store::Error::NotFound { .. } => "no such object".to_string(),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            format!("{doing}: access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN): {}", crate::error::one_line(&e.to_string()))
        }
        _ => {
            let m = crate::error::one_line(&e.to_string());
            // S3 answers bad keys with 403 codes object_store reports as generic errors
            if m.contains("403")
                || m.contains("InvalidAccessKeyId")
                || m.contains("SignatureDoesNotMatch")
                || m.contains("AccessDenied")
            {
                format!("{doing}: access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN): {m}")
            } else {
                format!("{doing}: {m}")
            }
        }
    };
    TraceError::Io {
        path: PathBuf::from(what),
        source: std::io::Error::other(msg),
    }
}

#[derive(Debug)]
struct S3Trace {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl S3Trace {
    fn key(&self, name: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(name)
        } else {
            Key::from(format!("{}/{name}", self.prefix))
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.location())
    }
}

fn rt_err(e: Error) -> TraceError {
    TraceError::Invalid(e.to_string())
}

impl RemoteTrace for S3Trace {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, TraceError> {
        let key = self.key(name);
        let r = block_on(async {
            let g = self.store.get(&key).await?;
            g.bytes().await
        })
        .map_err(rt_err)?;
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(trace_error(&self.url(name), "cannot read", &e)),
        }
    }

    fn open(&self, name: &str) -> Result<Option<Arc<dyn RemoteFile>>, TraceError> {
        let key = self.key(name);
        match block_on(self.store.head(&key)).map_err(rt_err)? {
            Ok(m) => Ok(Some(Arc::new(S3File {
                store: self.store.clone(),
                key,
                size: m.size,
                url: self.url(name),
            }))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(trace_error(&self.url(name), "cannot read", &e)),
        }
    }

    /// One suffix-range GET: the object's last `tail` bytes and, from the answer, its size.
    fn open_with_tail(
        &self,
        name: &str,
        tail: usize,
    ) -> Result<Option<trace::remote::FileWithTail>, TraceError> {
        let key = self.key(name);
        let opts = GetOptions {
            range: Some(GetRange::Suffix(tail as u64)),
            ..Default::default()
        };
        let r = block_on(async {
            let g = self.store.get_opts(&key, opts).await?;
            let size = g.meta.size;
            g.bytes().await.map(|b| (size, b))
        })
        .map_err(rt_err)?;
        match r {
            Ok((size, bytes)) => Ok(Some((
                Arc::new(S3File {
                    store: self.store.clone(),
                    key,
                    size,
                    url: self.url(name),
                }),
                bytes,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(trace_error(&self.url(name), "cannot read", &e)),
        }
    }
}

#[derive(Debug)]
struct S3File {
    store: Arc<dyn ObjectStore>,
    key: Key,
    size: u64,
    url: String,
}

impl RemoteFile for S3File {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
        let end = start.saturating_add(len as u64).min(self.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        block_on(self.store.get_range(&self.key, start..end))
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .map_err(|e| {
                std::io::Error::other(format!(
                    "{}: range {start}..{end}: {}",
                    self.url,
                    crate::error::one_line(&e.to_string())
                ))
            })
    }
}

/// True for an object-storage URL (`s3://bucket/prefix`).
pub fn is_url(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse("s3://b/runs/x/").unwrap(),
            ("b".to_string(), "runs/x/".to_string())
        );
        assert_eq!(parse("s3://b").unwrap(), ("b".to_string(), String::new()));
        assert!(parse("s3:///x").is_err());
    }
}
