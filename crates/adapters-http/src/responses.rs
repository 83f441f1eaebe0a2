//! The error responses of the OpenAPI document: [`Fails`] lists, per operation, the problems
//! it can answer with, from the error table; the HTTP layer's own rejections are declared
//! here as row markers ([`BearerRows`], [`BodyRows`], ...).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, Response, ResponseBuilder};

use crate::error::{ApiError, ErrorCode, ErrorRows, PROBLEM_JSON};

macro_rules! rows {
    ($( $(#[$doc:meta])* $name:ident => [$($code:ident),*]; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl ErrorRows for $name {
                fn codes() -> Vec<ErrorCode> {
                    vec![$(ErrorCode::$code),*]
                }
            }
        )*
    };
}

rows! {
    /// A malformed id in the path or a malformed query.
    BadInput => [InvalidRequest];
    /// A JSON body: malformed, too large, or too slow to arrive.
    BodyRows => [InvalidRequest, PayloadTooLarge, RequestTimeout];
    /// No free store slot in time (every call that touches the store).
    SlotRows => [Unavailable];
    /// The `Idempotency-Key` header.
    KeyRows => [InvalidRequest];
    /// The per-address rate limit of `POST /queue/tokens`.
    RateRows => [RateLimited];
    /// The operator bearer of `/admin` and `/metrics`.
    AdminRows => [TokenMissing, TokenInvalid];
    /// A missing queue bearer.
    BearerRows => [TokenMissing];
    /// A signed identity (with `AUTH_ISSUER` set): missing, invalid, of another user, or not
    /// verifiable yet (the provider's keys cannot be fetched).
    IdentityRows => [IdentityMissing, IdentityInvalid, Forbidden, Unavailable];
    /// An unknown file or document.
    NotFoundRows => [NotFound];
}

macro_rules! tuple_rows {
    ($($t:ident),*) => {
        impl<$($t: ErrorRows),*> ErrorRows for ($($t,)*) {
            fn codes() -> Vec<ErrorCode> {
                let mut codes = Vec::new();
                $( codes.extend($t::codes()); )*
                codes
            }
        }
    };
}
tuple_rows!(A, B);
tuple_rows!(A, B, C);
tuple_rows!(A, B, C, D);
tuple_rows!(A, B, C, D, E);
tuple_rows!(A, B, C, D, E, F);

/// The error responses of an operation, for `#[utoipa::path(responses(...))]`: one response per
/// status, listing its codes, with an example problem per code and the headers those codes
/// carry. `E` is a domain error enum, an HTTP-level marker, or a tuple of them.
#[derive(Debug)]
pub struct Fails<E>(PhantomData<E>);

impl<E: ErrorRows> utoipa::IntoResponses for Fails<E> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        for code in E::codes() {
            let codes = by_status.entry(code.status().as_u16()).or_default();
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        by_status
            .into_iter()
            .map(|(status, mut codes)| {
                codes.sort();
                (status.to_string(), error_response(&codes).into())
            })
            .collect()
    }
}

/// One status's problem response in the OpenAPI document.
fn error_response(codes: &[ErrorCode]) -> Response {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let mut content = ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")));
    for code in codes {
        let example = ApiError::new(*code, code.title().to_lowercase()).problem();
        let value = serde_json::to_value(example).unwrap_or_default();
        content = content.examples_from_iter([(
            code.as_str(),
            utoipa::openapi::example::ExampleBuilder::new().summary(code.title()).value(Some(value)).build(),
        )]);
    }
    let mut response = ResponseBuilder::new().description(names.join(", ")).content(PROBLEM_JSON, content.build());
    if codes.iter().any(|c| c.has_retry_after()) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new().schema(integer_schema()).description(Some("Seconds to wait before retrying")).build(),
        );
    }
    if codes.iter().any(|c| c.has_www_authenticate()) {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new().schema(string_schema()).description(Some("The Bearer challenge (RFC 6750)")).build(),
        );
    }
    if codes.contains(&ErrorCode::MethodNotAllowed) {
        response = response.header(
            "Allow",
            HeaderBuilder::new().schema(string_schema()).description(Some("The methods this path serves")).build(),
        );
    }
    response.build()
}

/// An integer header or field.
fn integer_schema() -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).into()
}

/// A string header or field.
fn string_schema() -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).into()
}
