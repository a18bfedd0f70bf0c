//! Reads that object_store gives up on at once, tried again.
//!
//! object_store retries what it knows to be safe: connections that failed, requests that were
//! not sent, timeouts and resets of idempotent requests, 5xx answers. A transport error it cannot
//! classify (hyper's "error sending request" on a pooled connection the server just closed, a
//! response cut inside its body) ends the request at the first attempt, whatever the method.
//! Reads (GET, HEAD, LIST) change nothing on the server, so [`Resilient`] sends them again a few
//! times, with backoff; writes pass through unchanged (object_store already retries those it may).
//! A read that still fails says how many attempts it took.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Attempts of a read in all (the first one included).
const ATTEMPTS: u32 = 4;

/// An object store whose reads are tried again after transport errors object_store does not retry.
#[derive(Debug)]
pub(crate) struct Resilient {
    inner: Arc<dyn ObjectStore>,
    first_delay: Duration,
}

impl Resilient {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, first_delay: Duration::from_millis(100) }
    }
}

impl fmt::Display for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// A read that failed again and again.
#[derive(Debug, thiserror::Error)]
#[error("{source} (gave up after {attempts} attempts)")]
struct GaveUp {
    attempts: u32,
    source: object_store::Error,
}

/// Whether `e` is a transport error that object_store did not retry.
fn unretried(e: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return matches!(h.kind(), HttpErrorKind::Unknown | HttpErrorKind::Decode);
        }
        cause = c.source();
    }
    false
}

fn gave_up(attempts: u32, source: object_store::Error) -> object_store::Error {
    object_store::Error::Generic { store: "object store", source: Box::new(GaveUp { attempts, source }) }
}

impl Resilient {
    async fn read<T, F, Fut>(&self, send: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match send().await {
                Err(e) if unretried(&e) && attempt < ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) if attempt > 1 => return Err(gave_up(attempt, e)),
                other => return other,
            }
        }
    }

    /// A listing that starts again after the last object it yielded when it breaks.
    fn listing(&self, prefix: Option<&Path>, offset: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        struct State {
            inner: Arc<dyn ObjectStore>,
            prefix: Option<Path>,
            last: Option<Path>,
            stream: Option<BoxStream<'static, Result<ObjectMeta>>>,
            attempt: u32,
            delay: Duration,
            done: bool,
        }
        let state = State {
            inner: self.inner.clone(),
            prefix: prefix.cloned(),
            last: offset.cloned(),
            stream: None,
            attempt: 1,
            delay: self.first_delay,
            done: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            loop {
                if s.done {
                    return None;
                }
                let stream = s.stream.get_or_insert_with(|| match &s.last {
                    Some(last) => s.inner.list_with_offset(s.prefix.as_ref(), last),
                    None => s.inner.list(s.prefix.as_ref()),
                });
                match stream.next().await {
                    None => return None,
                    Some(Ok(meta)) => {
                        s.last = Some(meta.location.clone());
                        return Some((Ok(meta), s));
                    }
                    Some(Err(e)) if unretried(&e) && s.attempt < ATTEMPTS => {
                        tokio::time::sleep(s.delay).await;
                        s.delay *= 2;
                        s.attempt += 1;
                        s.stream = None;
                    }
                    Some(Err(e)) => {
                        s.done = true;
                        let e = if s.attempt > 1 { gave_up(s.attempt, e) } else { e };
                        return Some((Err(e), s));
                    }
                }
            }
        })
        .boxed()
    }
}

#[async_trait::async_trait]
impl ObjectStore for Resilient {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.read(|| self.inner.get_opts(location, options.clone())).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.read(|| self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(prefix, None)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.read(|| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    /// An in-memory store whose reads fail with an unclassified transport error `failures` times
    /// (a listing after yielding its first object).
    #[derive(Debug)]
    struct Flaky {
        inner: InMemory,
        failures: AtomicU32,
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Flaky")
        }
    }

    impl Flaky {
        fn fail(&self) -> Option<object_store::Error> {
            let left = self.failures.load(Ordering::SeqCst);
            (left > 0).then(|| {
                self.failures.store(left - 1, Ordering::SeqCst);
                let cause = std::io::Error::other("error sending request");
                object_store::Error::Generic {
                    store: "Flaky",
                    source: Box::new(HttpError::new(HttpErrorKind::Unknown, cause)),
                }
            })
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            match self.fail() {
                Some(e) => Err(e),
                None => self.inner.get_opts(location, options).await,
            }
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            let fault = self.fail();
            let all = self.inner.list(prefix);
            match fault {
                Some(e) => all.take(1).chain(futures::stream::iter([Err(e)])).boxed(),
                None => all,
            }
        }
        fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn store(failures: u32) -> Resilient {
        let flaky = Flaky { inner: InMemory::new(), failures: AtomicU32::new(0) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for name in ["a/1", "a/2", "a/3"] {
                flaky.inner.put(&name.into(), name.as_bytes().to_vec().into()).await.unwrap();
            }
        });
        flaky.failures.store(failures, Ordering::SeqCst);
        Resilient { inner: Arc::new(flaky), first_delay: Duration::from_millis(1) }
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn reads_are_sent_again_after_unclassified_transport_errors() {
        let s = store(3);
        let got = block_on(async { s.get(&"a/2".into()).await?.bytes().await }).unwrap();
        assert_eq!(&got[..], b"a/2");
    }

    #[test]
    fn a_read_that_keeps_failing_says_how_many_attempts_it_took() {
        let s = store(10);
        let e = block_on(s.get(&"a/2".into())).unwrap_err();
        assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
    }

    #[test]
    fn a_broken_listing_resumes_after_its_last_object() {
        let s = store(2);
        let names: Vec<String> = block_on(s.list(Some(&"a".into())).map(|m| m.unwrap().location.to_string()).collect());
        assert_eq!(names, ["a/1", "a/2", "a/3"]);
    }

    #[test]
    fn a_missing_object_is_not_retried() {
        let s = store(0);
        let e = block_on(s.get(&"a/9".into())).unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
    }
}
