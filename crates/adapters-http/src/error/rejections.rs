//! The rejections of actix's extractors and of body reading, as problem details.
//!
//! (see `crate::configure`), so no rejection is answered with actix's plain text. Bodies of the
//! API are read by `crate::extract::Body`, which maps its own failures with `payload_error`.
//!

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::HttpRequest;

use super::*;

/// `JsonConfig` error handler.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::payload_too_large(limit)
        }
        JsonPayloadError::ContentType => {
            ApiError::invalid_request("the body must be JSON (Content-Type: application/json)")
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(json_detail(&e)),
        JsonPayloadError::Payload(e) => payload_error(e, crate::BODY_LIMIT),
        other => ApiError::invalid_request(format!("unreadable body: {}", short(&other.to_string()))),
    };
    api.into()
}

/// A body that could not be read: too large, cut short, or garbled in transfer.
pub(crate) fn payload_error(err: PayloadError, limit: usize) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::payload_too_large(limit),
        PayloadError::Incomplete(_) => {
            ApiError::invalid_request("the body ended before its Content-Length; nothing was done")
        }
        _ => ApiError::invalid_request("the request body could not be read"),
    }
}

/// `PathConfig` error handler: a malformed segment in the path.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = err else {
        return ApiError::invalid_request("malformed path").into();
    };
    ApiError::invalid_request(format!("malformed path: {}", short(&e.to_string()))).into()
}

/// `QueryConfig` error handler.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let QueryPayloadError::Deserialize(e) = err else {
        return ApiError::invalid_request("malformed query string").into();
    };
    ApiError::invalid_request(format!("malformed query string: {}", short(&e.to_string()))).into()
}

/// The client-facing text of a JSON syntax or shape error. serde's messages name fields and
/// expected shapes (the DTOs set `expecting` so no Rust type name appears), which helps clients
/// fix their request.
pub(crate) fn json_detail(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("malformed JSON: {}", short(&e.to_string())),
        Category::Data => format!("invalid JSON body: {}", short(&e.to_string())),
        Category::Io => "the request body could not be read".to_owned(),
    }
}

/// Caps client-echoed text so a huge bad value cannot make a huge error body.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
