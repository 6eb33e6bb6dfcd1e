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
        (path = "/api/auth", api = super::auth::ApiDoc),
        (path = "/api/chat", api = super::legacy::ApiDoc),
        (path = "/api/chat", api = super::chat_api::ApiDoc),
        (path = "/api/presence", api = super::presence::ApiDoc),
        (path = "/api/notifications", api = super::notifications::ApiDoc),
        (path = "/api/files", api = super::files::ApiDoc),
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
    doc.merge(super::webchat::ApiDoc::openapi());
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
