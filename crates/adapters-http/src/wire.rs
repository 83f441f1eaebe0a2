//! How values without a JSON form of their own go on the wire, written once.
//!
//! - Domain enums (`TokenStatus`, `SeatStatus`, ...) derive `strum::IntoStaticStr` and
//!   `strum::VariantNames` with the contract's spelling; [`as_str`] serialises any of them and
//!   [`enum_schema`] describes any of them in OpenAPI, so no DTO mirrors a domain enum by hand.
//! - Times are RFC 3339 in UTC ([`utc`]).
//! - Ids are accepted only in the contract's form: lower-case, hyphenated UUIDs
//!   ([`canonical_uuid`], [`CanonicalUuid`]).

use serde::{Deserialize, Deserializer, Serializer};
use time::{OffsetDateTime, UtcOffset};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use uuid::Uuid;

/// Serialises a strum enum with its contract spelling: `#[serde(serialize_with = "wire::as_str")]`.
///
/// # Errors
/// Only the serializer's own.
pub fn as_str<E, S>(value: &E, s: S) -> Result<S::Ok, S::Error>
where
    E: Copy + Into<&'static str>,
    S: Serializer,
{
    s.serialize_str((*value).into())
}

/// The OpenAPI schema of a strum enum: a string, one of its variants' spellings:
/// `#[schema(schema_with = wire::enum_schema::<TokenStatus>)]`.
#[must_use]
pub fn enum_schema<E: strum::VariantNames>() -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).enum_values(Some(E::VARIANTS.to_vec())).into()
}

/// Serialises an optional domain enum by its contract spelling, `null` when absent.
///
/// # Errors
/// Whatever the serializer returns.
pub fn as_opt_str<E, S>(value: &Option<E>, s: S) -> Result<S::Ok, S::Error>
where
    E: Copy + Into<&'static str>,
    S: Serializer,
{
    match value {
        Some(v) => s.serialize_str((*v).into()),
        None => s.serialize_none(),
    }
}

/// The schema of an optional domain enum: its spellings, or `null`.
pub fn nullable_enum_schema<E: strum::VariantNames>() -> Schema {
    let mut values: Vec<serde_json::Value> = E::VARIANTS.iter().map(|v| serde_json::Value::from(*v)).collect();
    values.push(serde_json::Value::Null);
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])).enum_values(Some(values)).into()
}

/// The same instant in UTC, so every time on the wire ends in `Z`.
#[must_use]
pub fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

/// A time as the contract writes it (RFC 3339 in UTC), for bodies built without serde.
#[must_use]
pub fn rfc3339(t: OffsetDateTime) -> String {
    utc(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether `s` is a UUID in the contract's form: 36 characters, lower-case hex digits,
/// hyphens at 8, 13, 18 and 23.
#[must_use]
pub fn canonical_uuid(s: &str) -> Option<Uuid> {
    let shaped = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        });
    if shaped {
        Uuid::parse_str(s).ok()
    } else {
        None
    }
}

/// A UUID in a JSON body, accepted only in the contract's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalUuid(pub Uuid);

impl<'de> Deserialize<'de> for CanonicalUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CanonicalUuid;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a lower-case hyphenated UUID")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CanonicalUuid, E> {
                canonical_uuid(v)
                    .map(CanonicalUuid)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl utoipa::PartialSchema for CanonicalUuid {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        uuid_schema().into()
    }
}

impl utoipa::ToSchema for CanonicalUuid {}

/// The schema of an id: a lower-case hyphenated UUID.
#[must_use]
pub fn uuid_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
        .pattern(Some("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contract_form_of_a_uuid_is_an_id() {
        let id = "0f8c41b7-1a2b-4c3d-8e9f-0123456789ab";
        assert_eq!(canonical_uuid(id).map(|u| u.to_string()), Some(id.to_owned()));
        assert_eq!(canonical_uuid(&id.to_uppercase()), None);
        assert_eq!(canonical_uuid(&id.replace('-', "")), None);
        assert_eq!(canonical_uuid(&format!("{{{id}}}")), None);
        assert_eq!(canonical_uuid(&format!("urn:uuid:{id}")), None);
        assert_eq!(canonical_uuid("0f8c41b7-1a2b-4c3d-8e9f-0123456789a"), None);
        assert_eq!(canonical_uuid("0f8c41b7-1a2b-4c3d-8e9f-0123456789ag"), None);
    }

    #[test]
    fn enums_serialise_and_describe_themselves_once() {
        #[derive(serde::Serialize)]
        struct S {
            #[serde(serialize_with = "as_str")]
            status: domain::queue::TokenStatus,
        }
        let json = serde_json::to_string(&S { status: domain::queue::TokenStatus::Waiting }).unwrap();
        assert_eq!(json, r#"{"status":"WAITING"}"#);
        let schema = serde_json::to_value(enum_schema::<domain::catalogue::SeatStatus>()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["AVAILABLE", "HELD", "SOLD"]));
    }
}
