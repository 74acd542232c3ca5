//! A cached object kept small: its metadata as parsed fields, everything else (spec, status,
//! data) as one compact JSON string, turned back into the full object only when a pass reads
//! it. A parsed k8s-openapi object takes about five times its JSON size (a Deployment's pod
//! template holds every container field and volume source inline; a ControllerRevision's data
//! is a tree of `serde_json::Value`s), so at a thousand `ModelDeployment`s full stores of their
//! Deployments and ControllerRevisions would be most of the operator's memory.

use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// An object of kind `K`: its metadata, and the rest as compact JSON.
pub struct Compact<K> {
    metadata: ObjectMeta,
    rest: Box<str>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Compact<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    /// The full object, as the API server sent it (less what the cache stripped of its
    /// metadata).
    pub fn full(&self) -> Result<K, serde_json::Error> {
        let mut fields: Map<String, Value> = serde_json::from_str(&self.rest)?;
        fields.insert("apiVersion".into(), K::api_version(&()).into());
        fields.insert("kind".into(), K::kind(&()).into());
        fields.insert("metadata".into(), serde_json::to_value(&self.metadata)?);
        serde_json::from_value(Value::Object(fields))
    }
}

impl<'de, K> Deserialize<'de> for Compact<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let metadata = match fields.remove("metadata") {
            Some(meta) => serde_json::from_value(meta).map_err(D::Error::custom)?,
            None => ObjectMeta::default(),
        };
        fields.remove("apiVersion");
        fields.remove("kind");
        Ok(Self {
            metadata,
            rest: Value::Object(fields).to_string().into_boxed_str(),
            kind: PhantomData,
        })
    }
}

impl<K> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            rest: self.rest.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Compact<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact")
            .field("metadata", &self.metadata)
            .field("rest", &self.rest)
            .finish()
    }
}

impl<K: k8s_openapi::Resource> k8s_openapi::Resource for Compact<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: k8s_openapi::Resource> k8s_openapi::Metadata for Compact<K> {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
    use serde_json::json;

    #[test]
    fn a_compact_object_turns_back_into_the_full_one() {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "m-abc", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}
            },
            "status": {"availableReplicas": 1}
        });
        let compact: Compact<Deployment> = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(kube::ResourceExt::name_any(&compact), "m-abc");
        let full: Deployment = serde_json::from_value(object).unwrap();
        assert_eq!(compact.full().unwrap(), full);
    }

    #[test]
    fn revision_data_survives_the_round_trip() {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "m-abc"},
            "data": {"model": {"name": "x", "version": "1"}, "n": 1.5},
            "revision": 3
        });
        let compact: Compact<ControllerRevision> = serde_json::from_value(object.clone()).unwrap();
        let full: ControllerRevision = serde_json::from_value(object).unwrap();
        assert_eq!(compact.full().unwrap(), full);
    }
}
