//! OpenAI's `input`, parsed straight into [`Input`]s with the request limits enforced while
//! parsing: a string, strings, token ids, or lists of token ids.
//!
//! No intermediate JSON tree is built (a 2 MiB body of small numbers would become a million
//! `serde_json::Value`s), and parsing stops at the first input over the count limit or the first
//! token id list over the length limit.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use crate::engine::InputLimits;
use crate::error::ApiError;
use crate::tokenize::Input;

const EXPECTED: &str =
    "input must be a string, an array of strings, an array of token ids or an array of arrays of token ids";

/// Parses the raw JSON of `input` under `limits`.
pub fn parse_input(json: &str, limits: InputLimits) -> Result<Vec<Input>, ApiError> {
    let violation = RefCell::new(None);
    let seed = InputSeed {
        limits,
        violation: &violation,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let result = seed.deserialize(&mut deserializer);
    if let Some(err) = violation.into_inner() {
        return Err(err);
    }
    let inputs = result.map_err(|_| ApiError::invalid(EXPECTED, "input"))?;
    if inputs.is_empty() {
        return Err(ApiError::invalid("input must not be empty", "input"));
    }
    Ok(inputs)
}

struct InputSeed<'a> {
    limits: InputLimits,
    /// The limit that stopped parsing, reported with its own status instead of serde's message.
    violation: &'a RefCell<Option<ApiError>>,
}

impl InputSeed<'_> {
    fn stop<E: de::Error>(&self, err: ApiError) -> E {
        let message = err.to_string();
        *self.violation.borrow_mut() = Some(err);
        E::custom(message)
    }

    fn too_many<E: de::Error>(&self) -> E {
        self.stop(ApiError::invalid(
            format!(
                "more than {} inputs in one request, the server's limit",
                self.limits.max_inputs
            ),
            "input",
        ))
    }

    fn too_long<E: de::Error>(&self, index: usize, limit: usize) -> E {
        self.stop(ApiError::TooManyIds { index, limit })
    }
}

impl<'de> DeserializeSeed<'de> for InputSeed<'_> {
    type Value = Vec<Input>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// One element of the top-level array, whose kind decides the input shape.
enum Item {
    Text(String),
    Id(u32),
    Ids(Vec<u32>),
}

impl<'de> Visitor<'de> for InputSeed<'_> {
    type Value = Vec<Input>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(vec![Input::Text(text.to_owned())])
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(vec![Input::Text(text)])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        let mut flat_ids: Vec<u32> = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed {
            outer: &self,
            index: inputs.len(),
        })? {
            match item {
                Item::Id(id) if inputs.is_empty() => {
                    if self
                        .limits
                        .max_ids
                        .is_some_and(|limit| flat_ids.len() >= limit)
                    {
                        return Err(self.too_long(0, self.limits.max_ids.unwrap_or_default()));
                    }
                    flat_ids.push(id);
                }
                Item::Text(_) | Item::Ids(_) if !flat_ids.is_empty() => {
                    return Err(de::Error::custom(EXPECTED))
                }
                Item::Id(_) => return Err(de::Error::custom(EXPECTED)),
                Item::Text(text) => inputs.push(Input::Text(text)),
                Item::Ids(ids) => inputs.push(Input::Ids(ids)),
            }
            if let (Some(Input::Text(_)), Some(Input::Ids(_)))
            | (Some(Input::Ids(_)), Some(Input::Text(_))) = (inputs.first(), inputs.last())
            {
                return Err(de::Error::custom(EXPECTED));
            }
            if inputs.len() > self.limits.max_inputs {
                return Err(self.too_many());
            }
        }
        if !flat_ids.is_empty() {
            inputs.push(Input::Ids(flat_ids));
        }
        Ok(inputs)
    }
}

struct ItemSeed<'s, 'a> {
    outer: &'s InputSeed<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_> {
    type Value = Item;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Item, E> {
        Ok(Item::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Item, E> {
        Ok(Item::Text(text))
    }

    fn visit_u64<E: de::Error>(self, id: u64) -> Result<Item, E> {
        u32::try_from(id)
            .map(Item::Id)
            .map_err(|_| E::custom(EXPECTED))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<u32>()? {
            if let Some(limit) = self.outer.limits.max_ids {
                if ids.len() >= limit {
                    return Err(self.outer.too_long(self.index, limit));
                }
            }
            ids.push(id);
        }
        Ok(Item::Ids(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const LIMITS: InputLimits = InputLimits {
        max_inputs: 3,
        max_ids: Some(4),
    };

    fn parse(json: &str) -> Result<Vec<Input>, ApiError> {
        parse_input(json, LIMITS)
    }

    #[test]
    fn all_input_shapes_parse() {
        assert_eq!(parse(r#""hi""#).unwrap(), vec![Input::Text("hi".into())]);
        assert_eq!(parse(r#"["a", "b"]"#).unwrap().len(), 2);
        assert_eq!(
            parse("[101, 7592, 102]").unwrap(),
            vec![Input::Ids(vec![101, 7592, 102])]
        );
        assert_eq!(
            parse("[[101], [102, 103]]").unwrap(),
            vec![Input::Ids(vec![101]), Input::Ids(vec![102, 103])]
        );
    }

    #[test]
    fn wrong_input_types_are_rejected() {
        for bad in [
            "42",
            "null",
            r#"{"text": "a"}"#,
            r#"["a", 1]"#,
            r#"[1, "a"]"#,
            r#"["a", [1]]"#,
            r#"[[1], "a"]"#,
            "[-1]",
            "[1.5]",
            "[4294967296]",
            "[true]",
            "[[1, -2]]",
            "[]",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}: {err}");
        }
    }

    #[test]
    fn limits_stop_parsing_with_their_own_status() {
        let err = parse(r#"["a", "b", "c", "d"]"#).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("more than 3 inputs"), "{err}");
        let err = parse("[1, 2, 3, 4, 5]").unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        let err = parse("[[1], [1, 2, 3, 4, 5]]").unwrap_err();
        assert!(
            matches!(err, ApiError::TooManyIds { index: 1, limit: 4 }),
            "{err}"
        );
        let truncating = InputLimits {
            max_ids: None,
            ..LIMITS
        };
        assert_eq!(parse_input("[1, 2, 3, 4, 5]", truncating).unwrap().len(), 1);
    }

    #[test]
    fn a_huge_id_list_stops_at_the_limit() {
        let json = format!("[{}]", vec!["7"; 1_000_000].join(","));
        let err = parse(&json).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
