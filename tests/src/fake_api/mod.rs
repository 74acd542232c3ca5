//! An in-process Kubernetes API server that keeps the rules the operator relies on: resource
//! versions and optimistic concurrency, server-side apply with field ownership, the status and
//! scale subresources, owner-reference garbage collection and watches. Tests talk to it through a
//! real `kube::Client` over HTTP on 127.0.0.1, so the operator's code runs unchanged.
//!
//! ```text
//! kube::Client ──HTTP──> http::handle ──> writes / scale / watch ──> store (JSON + versions)
//! ```

mod errors;
mod fields;
mod http;
mod label_index;
mod managed;
mod resources;
mod scale;
mod schema;
mod selectors;
mod store;
mod watch;
mod writes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use errors::ApiError;
pub use resources::{ResourceKind, KINDS};

use http::{lock, Refusal, Shared};
use store::Key;
use writes::{Scope, Writer};

/// Field manager of writes made through the test hooks.
pub const TEST_HOOK_MANAGER: &str = "kandle-tests";

/// One request the fake served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string.
    pub query: String,
}

/// A running fake API server. Dropping it stops the server and ends open watches.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn kind_index<K: Resource<DynamicType = ()>>() -> anyhow::Result<usize> {
    let (group, version, plural) = (K::group(&()), K::version(&()), K::plural(&()));
    resources::find(&group, &version, &plural)
        .with_context(|| format!("the fake API server does not serve {group}/{version} {plural}"))
}

impl FakeApiServer {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::default()),
            log: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            refusals: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake API server")?;
        let addr = listener
            .local_addr()
            .context("reading the fake API server's address")?;
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake API server stopped");
            }
        });
        Ok(Self { addr, shared })
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` talking to this server, with default namespace `default`.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let config = kube::Config::new(
            self.url()
                .parse()
                .context("parsing the fake API server URL")?,
        );
        kube::Client::try_from(config).context("building a kube client for the fake API server")
    }

    /// Every stored object of kind `K`, in all namespaces, in namespace and name order.
    pub fn objects<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
    ) -> anyhow::Result<Vec<K>> {
        let kind = kind_index::<K>()?;
        let store = lock(&self.shared.store);
        store
            .list(kind, None)
            .map(|o| {
                serde_json::from_value(o.clone())
                    .with_context(|| format!("decoding a stored {}", K::kind(&())))
            })
            .collect()
    }

    /// The stored object, if it exists.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Option<K>> {
        let key: Key = (kind_index::<K>()?, namespace.to_string(), name.to_string());
        let store = lock(&self.shared.store);
        store
            .get(&key)
            .map(|o| {
                serde_json::from_value(o.clone())
                    .with_context(|| format!("decoding {} {namespace}/{name}", K::kind(&())))
            })
            .transpose()
    }

    /// Replaces the object's `.status`, as the component owning it would (a Deployment
    /// controller reporting availability, a scheduler marking a pod unschedulable). The write
    /// bumps the resource version and is seen by watches.
    pub fn set_status<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> anyhow::Result<K> {
        let key: Key = (kind_index::<K>()?, namespace.to_string(), name.to_string());
        let mut store = lock(&self.shared.store);
        let mut body = store.require(&key)?.clone();
        body["status"] = status;
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let writer = Writer {
            manager: TEST_HOOK_MANAGER.to_string(),
            force: false,
        };
        let scope = if KINDS[key.0].status_subresource {
            Scope::Status
        } else {
            Scope::Main
        };
        let updated = writes::replace(&mut store, &key, body, &writer, scope)?;
        serde_json::from_value(updated).context("decoding the updated object")
    }

    /// The current global resource version.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).version()
    }

    /// How many changes each kind has seen, as `(group/version, plural, count)`.
    pub fn changes_per_kind(&self) -> Vec<(String, &'static str, u64)> {
        let store = lock(&self.shared.store);
        KINDS
            .iter()
            .zip(store.changes_per_kind())
            .map(|(kind, count)| (kind.api_version(), kind.plural, *count))
            .collect()
    }

    /// From now on, refuses every write of a `K` whose body contains `needle` with `422
    /// Invalid` and `message`, as the API server's validation of a built-in kind would.
    pub fn refuse_writes<K: Resource<DynamicType = ()>>(
        &self,
        needle: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        lock(&self.shared.refusals).push(Refusal {
            kind: kind_index::<K>()?,
            needle: needle.to_string(),
            message: message.to_string(),
        });
        Ok(())
    }

    /// Every request served so far.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
