//! The operator's Kubernetes client: kube's default client with one tower layer in front that
//! keeps it polite (a token bucket of `--kube-api-qps` and `--kube-api-burst`, as client-go's)
//! and counts every request by verb, resource and response code into the operator's metrics.

mod throttle;
mod verb;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use kube::client::ClientBuilder;
use kube::Client;
use tower::{Layer, Service};

use crate::metrics::Metrics;
pub use throttle::{Limits, TokenBucket};
pub use verb::{classify, RequestKind};

/// A client for `config` that sends at most `limits` and counts its requests into `metrics`.
pub fn client(
    config: kube::Config,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> Result<Client, kube::Error> {
    let layer = PoliteLayer { limits, metrics };
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

/// Throttles and counts the requests of the service it wraps.
#[derive(Clone, Debug)]
pub struct PoliteLayer {
    /// How fast requests may go.
    pub limits: Limits,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for PoliteLayer {
    type Service = Polite<S>;

    fn layer(&self, inner: S) -> Polite<S> {
        Polite {
            inner,
            metrics: self.metrics.clone(),
            bucket: TokenBucket::new(self.limits, Instant::now()),
            wait: None,
            admitted: false,
        }
    }
}

/// The service [`PoliteLayer`] makes. kube's client drives it through a buffer, one request at
/// a time, so waiting for a token in `poll_ready` holds back exactly the next request.
pub struct Polite<S> {
    inner: S,
    metrics: Arc<Metrics>,
    bucket: Option<TokenBucket>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A token was taken for the next call.
    admitted: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for Polite<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let (false, Some(bucket)) = (self.admitted, self.bucket.as_mut()) {
            loop {
                if let Some(wait) = self.wait.as_mut() {
                    ready!(wait.as_mut().poll(cx));
                    self.wait = None;
                }
                match bucket.take(Instant::now()) {
                    Ok(()) => break,
                    Err(delay) => self.wait = Some(Box::pin(tokio::time::sleep(delay))),
                }
            }
        }
        self.admitted = true;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.admitted = false;
        let kind = classify(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
        );
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            metrics.record_request(&kind, code);
            result
        })
    }
}
