//! One reading of every JSON body: a body is an object, and no object in it, at any depth,
//! names a key twice.
//!
//! serde (and `serde_json::Value`) keep the last of two equal keys, so `{"amount":1,"amount":2}`
//! would be read as 2 by this service while a proxy or a firewall that keeps the first reads 1:
//! the two would disagree about what was asked. RFC 8259 leaves the meaning of such an object
//! to the reader; this service refuses it (400 `INVALID_REQUEST`) before anything reads a
//! field. The check is one pass of `serde_json`'s parser over the bytes that builds nothing but
//! the key names of one object at a time; the typed read follows it.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads `bytes` as a `T` after checking that they are one JSON object with no key twice in
/// any object.
///
/// # Errors
/// The parser's error: malformed JSON, a top level that is not an object, a key named twice
/// (naming it), or a value `T` does not accept.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Unique { top: true }.deserialize(&mut de)?;
    de.end()?;
    serde_json::from_slice(bytes)
}

/// A value whose objects name each key once; `top` also asks for an object.
#[derive(Debug, Clone, Copy)]
struct Unique {
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Unique {
    fn scalar<E: de::Error>(self, what: de::Unexpected<'_>) -> Result<(), E> {
        if self.top {
            Err(E::invalid_type(what, &self))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.top { "a JSON object" } else { "a JSON value" })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(Unique { top: false })?;
            if let Some(twice) = seen.replace(key) {
                return Err(de::Error::custom(format_args!("the field `{twice}` is given more than once")));
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        while seq.next_element_seed(Unique { top: false })?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(de::Unexpected::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(de::Unexpected::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(de::Unexpected::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(de::Unexpected::Unit)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Charge {
        amount: i64,
    }

    fn err(body: &str) -> String {
        from_slice::<Value>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn an_object_with_each_key_once_reads_as_usual() {
        assert_eq!(from_slice::<Charge>(br#"{"amount": 5}"#).unwrap(), Charge { amount: 5 });
        let nested = br#"{"a": [{"x": 1}, {"x": 2}], "b": {"x": {"x": null}}, "c": "x"}"#;
        assert!(from_slice::<Value>(nested).is_ok(), "equal keys in different objects");
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        assert!(err(r#"{"amount":1,"amount":2}"#).contains("`amount` is given more than once"));
        assert!(err(r#"{"s":[{"n":1,"p":2,"n":3}]}"#).contains("`n` is given more than once"));
        assert!(err(r#"{"a":{"b":{"c":1,"c":1}}}"#).contains("`c`"));
        // The same name written with an escape is the same key.
        assert!(err(r#"{"amount":1,"\u0061mount":2}"#).contains("`amount`"));
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in ["[1, 2]", "1", "\"x\"", "null", "true", "1.5"] {
            assert!(err(body).contains("expected a JSON object"), "{body}: {}", err(body));
        }
        assert!(from_slice::<Value>(b"{} {}").is_err(), "trailing data");
        assert!(from_slice::<Value>(b"{\"a\":").is_err(), "truncated");
    }
}
