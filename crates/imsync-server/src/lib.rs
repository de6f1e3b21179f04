//! The HTTP side of imsync: one router per API face over one [`imsync_service::Service`], plus
//! health, metrics and the OpenAPI document. Handlers only parse, authorise, call the service and
//! render; rules and storage live below.
#![forbid(unsafe_code)]

mod app;
mod auth;
mod client_addr;
mod ddp;
mod error;
mod extract;
mod face_errors;
mod files;
mod metrics;
mod native;
mod ratelimit;
mod realtime;
mod rocketchat;
mod serve;
mod tsdd;
pub mod wukongim;

pub use app::{router, AppParts, AppState, ServerConfig};
pub use client_addr::TrustedProxies;
pub use metrics::install_recorder;
pub use serve::{serve, ServeConfig};

/// The OpenAPI document of the native face, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = native::router().split_for_parts().1;
    doc.merge(<native::files::FilesDoc as utoipa::OpenApi>::openapi());
    doc
}
