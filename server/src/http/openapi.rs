//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! wire types' `ToSchema` derives, served at `/openapi.json`, with Swagger UI (vendored, so it
//! works offline) at `/docs`.

use super::error::ErrorBody;
use std::collections::BTreeMap;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Object, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The error responses every `/v1` route may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ErrorResponses {
    /// Malformed JSON, wrong types, unknown fields, invalid values.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No API key, or an unknown or revoked one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such sandbox (or not the caller's), context, file or tool.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body is over the limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The API key's rate limit or a quota; see `Retry-After`.
    #[response(status = 429)]
    TooMany(ErrorBody),
    /// The server is at a limit or not ready; see `Retry-After`.
    #[response(status = 503)]
    Busy(ErrorBody),
    /// The response took longer than the server's request timeout.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SoulBox",
        description = "Run untrusted Python and JavaScript fast and safely: one-shot executions, stateful \
                       sandboxes with streaming, files, and tools for LLMs (also over MCP at `/mcp`). Every \
                       `/v1` route takes an API key (`Authorization: Bearer sbk_...` or `x-api-key`)."
    ),
    paths(
        super::execute::execute,
        super::execute::usage,
        super::audit::list,
        super::sandboxes::create,
        super::sandboxes::list,
        super::sandboxes::info,
        super::sandboxes::kill,
        super::sandboxes::set_timeout,
        super::sandboxes::pause,
        super::sandboxes::checkpoint,
        super::sandboxes::resume,
        super::sandboxes::fork,
        super::templates::save,
        super::templates::list,
        super::templates::describe,
        super::templates::remove,
        super::sandboxes::contexts,
        super::sandboxes::create_context,
        super::sandboxes::restart_context,
        super::sandboxes::remove_context,
        super::sandboxes::execute,
        super::files::download,
        super::files::upload,
        super::files::remove,
        super::files::list,
        super::files::stat,
        super::files::rename,
        super::files::mkdir,
        super::processes::command,
        super::processes::list,
        super::processes::info,
        super::processes::kill,
        super::processes::stdin,
        super::processes::close_stdin,
        super::processes::resize,
        super::processes::output,
        super::processes::wait,
        super::processes::render_in_sandbox,
        super::processes::render,
        super::tools::definitions,
        super::tools::call,
        super::health,
        super::ready,
    ),
    modifiers(&Security, &FlattenedBodies),
    tags(
        (name = "executions", description = "One-shot runs in fresh guests"),
        (name = "sandboxes", description = "Stateful sandboxes and their cells"),
        (name = "templates", description = "Prepared sandboxes saved to start new ones from"),
        (name = "contexts", description = "Kernels inside a sandbox"),
        (name = "files", description = "A sandbox's workspace"),
        (name = "processes", description = "Commands, background processes and terminals in a sandbox's container"),
        (name = "browser", description = "A headless browser: pages to PNG, PDF, text and links"),
        (name = "tools", description = "Function-calling tools for LLMs"),
        (name = "usage", description = "What a tenant ran"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// Declares the API-key schemes and applies them to every `/v1` operation.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("sbk_...").build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
        let requirement = vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                operation.security = Some(requirement.clone());
            }
        }
    }
}

/// Writes each wire body that flattens an engine type beside its own fields (serde's `flatten`)
/// as the one object the server reads. utoipa writes them as an `allOf` of the engine type,
/// which refuses other fields (`additionalProperties: false`), and the body's own fields: a
/// schema no body can satisfy.
struct FlattenedBodies;

/// The bodies [`FlattenedBodies`] rewrites.
const FLATTENED_BODIES: [&str; 2] = ["CellRequest", "CommandBody"];

impl Modify for FlattenedBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        for name in FLATTENED_BODIES {
            match merged_object(&components.schemas, name) {
                Some(merged) => {
                    components.schemas.insert(name.to_owned(), RefOr::T(Schema::Object(merged)));
                }
                None => tracing::error!(body = name, "the flattened body's schema is not an allOf of objects"),
            }
        }
    }
}

/// The `allOf` schema `name` as one object with every part's properties and required fields,
/// refusing any other.
fn merged_object(schemas: &BTreeMap<String, RefOr<Schema>>, name: &str) -> Option<Object> {
    let RefOr::T(Schema::AllOf(all)) = schemas.get(name)? else { return None };
    let mut merged: Option<Object> = None;
    for item in &all.items {
        let part = match item {
            RefOr::Ref(reference) => schemas.get(reference.ref_location.rsplit('/').next()?)?,
            inline => inline,
        };
        let RefOr::T(Schema::Object(object)) = part else { return None };
        match merged.as_mut() {
            None => merged = Some(object.clone()),
            Some(merged) => {
                merged.properties.extend(object.properties.clone());
                merged.required.extend(object.required.iter().cloned());
            }
        }
    }
    let mut merged = merged?;
    merged.description.clone_from(&all.description);
    merged.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    Some(merged)
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented_with_its_schemas() {
        let doc = super::document();
        let json = serde_json::to_value(&doc).unwrap();
        for path in ["/v1/execute", "/v1/sandboxes/{id}/execute", "/v1/sandboxes/{id}/files", "/v1/tools/call"] {
            assert!(json["paths"][path].is_object(), "{path} is documented");
        }
        for schema in
            ["ExecRequest_LimitsPatch", "ExecResult", "SandboxSpec", "Execution", "ExecutionEvent", "ErrorBody"]
        {
            assert!(json["components"]["schemas"][schema].is_object(), "{schema} is in the components");
        }
        assert!(json["components"]["securitySchemes"]["bearer"].is_object());
        let cell = &json["components"]["schemas"]["CellRequest"];
        assert_eq!(cell["additionalProperties"], false, "{cell}");
        for field in ["code", "context", "language", "limits"] {
            assert!(cell["properties"][field].is_object(), "{field} in {cell}");
        }
        assert_eq!(cell["required"], serde_json::json!(["code"]));
        let command = &json["components"]["schemas"]["CommandBody"];
        assert!(command["properties"]["background"].is_object() && command["properties"]["pty"].is_object());
    }
}
