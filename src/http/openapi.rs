//! `/openapi.json`, every route of the server, and `/docs`, the Swagger UI page for it,
//! served from files built into the binary (it works with no network).

use serde_json::{json, Value};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferrochat",
        description = "The Flask polling chat's API, the ChatFlow chat, presence, notifications and files, in one server."
    ),
    nest(
        (path = "/api/auth", api = super::auth::ApiDoc),
        (path = "/api/chat", api = super::legacy::ApiDoc),
        (path = "/api/chat", api = super::chat_api::ApiDoc),
        (path = "/api/chat", api = super::sse::ApiDoc),
        (path = "/api/presence", api = super::presence::ApiDoc),
        (path = "/api/notifications", api = super::notifications::ApiDoc),
        (path = "/api/files", api = super::files::ApiDoc),
        (path = "/api", api = super::search::ApiDoc),
        (path = "/api/hooks", api = super::hooks::ApiDoc),
        (path = "/api/webhooks", api = super::webhooks::ApiDoc),
        (path = "/api/bots", api = super::bots::ApiDoc),
        (path = "/hooks", api = super::hook_posts::ApiDoc),
    )
)]
pub struct ApiDoc;

/// The document, with each mount's root route (`/api/presence/`) at the path Rocket
/// answers it on (`/api/presence`).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // Destructive routes name this scheme: the admin token as a bearer.
    let bearer = utoipa::openapi::security::HttpBuilder::new()
        .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "admin",
            utoipa::openapi::security::SecurityScheme::Http(bearer),
        );
    // The mounts at the root need no prefix.
    doc.merge(super::ops::ApiDoc::openapi());
    doc.merge(super::ws::ApiDoc::openapi());
    doc.merge(crate::realtime::frames::FramesDoc::openapi());
    doc.merge(super::webchat::ApiDoc::openapi());
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => (trimmed.to_string(), item),
            _ => (path, item),
        })
        .collect();
    with_shared_parts(doc)
}

/// What every route shares, written into the document once rather than on each route:
/// the bounds the server checks on each path parameter (from the domain's own numbers; a
/// query's parameters describe themselves, `params`), the
/// body of every error (`{"detail"}`, one plain line on the Flask original's route), and
/// the 503 of every route that needs the database, Redis or the file store.
fn with_shared_parts(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                for param in op
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    let name = param["name"].as_str().unwrap_or_default().to_string();
                    let place = param["in"].as_str().unwrap_or_default().to_string();
                    if let Some(schema) = bounds(path, &name, &place) {
                        param["schema"] = schema;
                    }
                }
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                if !NEEDS_NOTHING.contains(&path.as_str()) && !responses.contains_key("503") {
                    responses.insert(
                        "503".into(),
                        json!({ "description": "a part it needs (the database, Redis, the file store) is away: try again" }),
                    );
                }
                for (code, response) in responses.iter_mut() {
                    // Every response has a description (generated clients refuse one
                    // without).
                    if response
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        response["description"] = json!(reason_of(code));
                    }
                    // The routes that declare no body answer a JSON object (a status, a
                    // count, what was deleted).
                    if code.starts_with('2') && code != "204" && response.get("content").is_none() {
                        response["content"] =
                            json!({ "application/json": { "schema": { "type": "object" } } });
                    }
                    if code.as_str() < "400" || response.get("content").is_some() {
                        continue;
                    }
                    // The Flask original's route and the hook URL answer one plain line.
                    let body = if path == "/api/chat/{room}" || path.starts_with("/hooks/") {
                        json!({ "text/plain": { "schema": { "type": "string" } } })
                    } else {
                        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } })
                    };
                    response["content"] = body;
                }
            }
        }
    }
    value["components"]["schemas"]["ErrorBody"] = json!({
        "type": "object",
        "description": "why the request was refused, in one line",
        "required": ["detail"],
        "properties": { "detail": { "type": "string" } }
    });
    serde_json::from_value(value).unwrap_or(doc)
}

/// Routes that touch no database, Redis or file store, so never answer 503 for them.
const NEEDS_NOTHING: [&str; 2] = ["/health/live", "/metrics"];

fn reason_of(code: &str) -> &'static str {
    match code {
        "101" => "switching to WebSocket",
        "200" => "OK",
        "201" => "created",
        "204" => "done; no body",
        "304" => "not modified since the ETag given",
        "400" => "a parameter or the body is not what the route takes",
        "401" => "not signed in, or the token is not valid",
        "403" => "signed in, but not allowed",
        "404" => "no such thing, or not one the caller may see",
        "409" => "taken already",
        "413" => "the body is too large",
        "415" => "the body is not of a type the route takes",
        "429" => "too many: come back after Retry-After seconds",
        _ => "refused",
    }
}

/// The schema of a path parameter as the server checks it (`domain::names`); the query's
/// parameters describe themselves (`params`).
fn bounds(path: &str, name: &str, place: &str) -> Option<Value> {
    use crate::domain::names::{MAX_ROOM_CHARS, MAX_USER_ID_CHARS};
    // No `/` (rooms), no control characters, no line or paragraph separator, none of the
    // invisible characters of `names::is_forbidden_in_name`.
    let name_chars = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u061c\\ufeff]+$";
    let room = json!({ "type": "string", "minLength": 1, "maxLength": MAX_ROOM_CHARS,
        "pattern": name_chars.replace("^[^", "^[^/") });
    Some(match (place, name) {
        // `/api/chat/rooms` and the others are the JSON API's own routes.
        ("path", "room") if path == "/api/chat/{room}" => {
            let mut legacy = room;
            legacy["not"] = json!({ "enum": crate::domain::names::RESERVED_ROOMS });
            legacy
        }
        ("path", "room" | "room_id") => room,
        ("path", "id") if path.starts_with("/api/chat/rooms/") => room,
        ("path", "id") if path.starts_with("/api/chat/messages/") => {
            json!({ "type": "string", "pattern": "^[0-9]{1,18}$" })
        }
        ("path", "user_id") => json!({ "type": "string", "minLength": 1,
            "maxLength": MAX_USER_ID_CHARS, "pattern": name_chars }),
        _ => return None,
    })
}

pub fn routes() -> Vec<rocket::Route> {
    SwaggerUi::new("/docs/<_..>")
        .url("/openapi.json", document())
        .into()
}
