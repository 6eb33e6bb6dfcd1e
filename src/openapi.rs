//! `/openapi.json`, every route of the server, and `/docs`, the Swagger UI page for it,
//! served from files built into the binary (it works with no network).

use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferrochat",
        description = "The Flask polling chat's API, the ChatFlow chat, presence, notifications and files, in one server."
    ),
    nest(
        (path = "/api/chat", api = crate::chat::ApiDoc),
        (path = "/api/chat", api = crate::chat::api::ApiDoc),
        (path = "/api/presence", api = crate::presence::ApiDoc),
        (path = "/api/notifications", api = crate::notifications::ApiDoc),
        (path = "/api/files", api = crate::files::ApiDoc),
    ),
    paths(
        crate::health::health,
        crate::health::healthz,
        crate::metrics::metrics,
        crate::realtime::ws::connect
    )
)]
pub struct ApiDoc;

/// The document, with each mount's root route (`/api/presence/`) at the path Rocket
/// answers it on (`/api/presence`).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => (trimmed.to_string(), item),
            _ => (path, item),
        })
        .collect();
    doc
}

pub fn routes() -> Vec<rocket::Route> {
    SwaggerUi::new("/docs/<_..>")
        .url("/openapi.json", document())
        .into()
}
