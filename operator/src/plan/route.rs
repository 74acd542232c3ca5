//! Exact traffic weights with the Gateway API, when `spec.rollout.trafficRouting.httpRoute` is
//! set: a Service per live revision (`<md>-<hash>`, selecting only that revision's pods) and one
//! HTTPRoute named after the `ModelDeployment`, attached to the spec's Gateways, whose single
//! rule sends each revision's Service its weight. The HTTPRoute's spec is the Gateway API type of
//! the `gateway-api` crate; its metadata is kandle's, as on every child.

use gateway_api::httproutes::{
    HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteSpec,
};
use k8s_openapi::api::core::v1::Service;
use kandle_crds::{labels, HttpRouteRouting, ModelDeployment};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::ResourceExt;

use super::meta;
use super::service::{self, SERVICE_PORT};

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The HTTPRoute kind as the dynamic API sees it.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// The routing of `md`, when it asks for an HTTPRoute.
pub fn routing(md: &ModelDeployment) -> Option<&HttpRouteRouting> {
    md.spec
        .rollout
        .traffic_routing
        .as_ref()
        .and_then(|t| t.http_route.as_ref())
}

/// The Service of one revision (`revision` is `<md>-<hash>`): the HTTPRoute's backend for it.
pub fn revision_service(md: &ModelDeployment, revision: &str) -> Service {
    let md_name = md.name_any();
    let hash = revision
        .strip_prefix(&format!("{md_name}-"))
        .unwrap_or(revision);
    let mut selector = meta::pod_selector_labels(&md_name);
    selector.insert(labels::REVISION.to_string(), hash.to_string());
    Service {
        metadata: meta::child_meta(md, revision, meta::revision_labels(&md_name, hash)),
        spec: Some(service::cluster_ip(selector)),
        status: None,
    }
}

/// The HTTPRoute sending each `(revision, weight)` its share; revisions with weight 0 are left
/// out.
pub fn http_route(
    md: &ModelDeployment,
    routing: &HttpRouteRouting,
    weights: &[(String, i32)],
) -> DynamicObject {
    let spec = HttpRouteSpec {
        parent_refs: Some(
            routing
                .parent_refs
                .iter()
                .map(|p| HttpRouteParentRefs {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    section_name: p.section_name.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        hostnames: (!routing.hostnames.is_empty()).then(|| routing.hostnames.clone()),
        rules: Some(vec![HttpRouteRules {
            backend_refs: Some(
                weights
                    .iter()
                    .filter(|(_, weight)| *weight > 0)
                    .map(|(revision, weight)| HttpRouteRulesBackendRefs {
                        name: revision.clone(),
                        port: Some(SERVICE_PORT),
                        weight: Some(*weight),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }]),
    };
    let md_name = md.name_any();
    let mut route =
        DynamicObject::new(&md_name, &http_route_resource()).within(&meta::namespace_of(md));
    route.metadata = meta::child_meta(md, &md_name, meta::common_labels(&md_name));
    route.data = serde_json::json!({ "spec": spec });
    route
}

/// The weights an HTTPRoute gives each revision, from the route as observed.
pub fn weights_of(route: &DynamicObject) -> Vec<(String, i32)> {
    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
    refs.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["name"].as_str()?.to_string(),
                i32::try_from(r["weight"].as_i64().unwrap_or(1)).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kandle_crds::{GatewayParentRef, TrafficRouting};

    use super::*;
    use crate::testing::md;

    fn routed() -> ModelDeployment {
        let mut md = md("bert").build();
        md.spec.rollout.traffic_routing = Some(TrafficRouting {
            http_route: Some(HttpRouteRouting {
                parent_refs: vec![GatewayParentRef {
                    name: "public".to_string(),
                    namespace: Some("gateways".to_string()),
                    section_name: None,
                }],
                hostnames: vec!["bert.example.com".to_string()],
            }),
        });
        md
    }

    #[test]
    fn the_route_carries_the_weights_of_each_revision_service() {
        let md = routed();
        let route = http_route(
            &md,
            routing(&md).unwrap(),
            &[
                ("bert-aaa".to_string(), 80),
                ("bert-bbb".to_string(), 20),
                ("bert-ccc".to_string(), 0),
            ],
        );
        assert_eq!(
            route.types.as_ref().map(|t| t.kind.as_str()),
            Some("HTTPRoute")
        );
        assert_eq!(
            weights_of(&route),
            vec![("bert-aaa".to_string(), 80), ("bert-bbb".to_string(), 20)]
        );
        let spec = &route.data["spec"];
        assert_eq!(spec["parentRefs"][0]["name"], "public");
        assert_eq!(spec["parentRefs"][0]["namespace"], "gateways");
        assert_eq!(spec["hostnames"][0], "bert.example.com");
        assert_eq!(spec["rules"][0]["backendRefs"][0]["port"], SERVICE_PORT);
        assert_eq!(
            route.metadata.owner_references.as_ref().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn a_revision_service_selects_only_that_revisions_pods() {
        let service = revision_service(&routed(), "bert-bbb");
        assert_eq!(service.name_any(), "bert-bbb");
        let selector = service.spec.unwrap().selector.unwrap();
        assert_eq!(
            selector.get(labels::REVISION).map(String::as_str),
            Some("bbb")
        );
        assert_eq!(
            selector.get(labels::MODEL_DEPLOYMENT).map(String::as_str),
            Some("bert")
        );
    }
}
