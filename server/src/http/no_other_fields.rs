//! [`NoOtherFields`]: `deny_unknown_fields` for a wire body that flattens an engine type.
//!
//! A request body such as a cell (`code` plus the engine's [`RunOptions`]) or a command (the
//! engine's [`ProcessSpec`] plus `background`) reuses the engine's type with
//! `#[serde(flatten)]` instead of repeating its fields. serde's `deny_unknown_fields` does not
//! work with `flatten`: the outer struct hands every key it does not know to the flattened
//! one, which ignores what it does not know. So such a body ends with a last
//! `#[serde(flatten)] NoOtherFields` field: serde gives it the keys no other field took, and it
//! refuses the first one by name. A misspelt field stays a 400 naming it, never silently
//! ignored.
//!
//! [`RunOptions`]: soulbox_engine::RunOptions
//! [`ProcessSpec`]: soulbox_engine::ProcessSpec

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// Refuses any key left over after the other fields of a flattened body took theirs. Must be
/// the body's last field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoOtherFields;

impl<'de> Deserialize<'de> for NoOtherFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Leftovers)
    }
}

struct Leftovers;

impl<'de> Visitor<'de> for Leftovers {
    type Value = NoOtherFields;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("no fields other than the documented ones")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOtherFields, A::Error> {
        match map.next_key::<String>()? {
            Some(key) => Err(de::Error::custom(format_args!("unknown field `{key}`"))),
            None => Ok(NoOtherFields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NoOtherFields;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        a: u32,
    }

    #[derive(Debug, Deserialize)]
    struct Body {
        b: String,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        _rest: NoOtherFields,
    }

    #[test]
    fn known_fields_of_both_levels_are_taken_and_a_stray_one_is_named() {
        let body: Body = serde_json::from_str(r#"{"b": "x", "a": 7}"#).unwrap();
        assert_eq!((body.b.as_str(), body.inner), ("x", Inner { a: 7 }));
        let body: Body = serde_json::from_str(r#"{"b": "x"}"#).unwrap();
        assert_eq!(body.inner, Inner { a: 0 });
        let stray = serde_json::from_str::<Body>(r#"{"b": "x", "a": 1, "c": 2}"#).unwrap_err();
        assert!(stray.to_string().contains("unknown field `c`"), "{stray}");
        let wrong_type = serde_json::from_str::<Body>(r#"{"b": "x", "a": "seven"}"#).unwrap_err();
        assert!(wrong_type.to_string().contains("invalid type"), "{wrong_type}");
    }
}
