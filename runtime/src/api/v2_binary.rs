//! v2 tensors on the wire: texts out of a BYTES input given as JSON `data` or in the binary
//! tensor data extension, and the embeddings out as JSON `data` or binary.
//!
//! The binary extension (what `tritonclient` sends by default): the body is the JSON request,
//! whose length is the `Inference-Header-Content-Length` header, followed by the inputs' raw
//! data in input order; an input with binary data has `parameters.binary_data_size` instead of
//! `data`. A BYTES element is a 4-byte little-endian length and that many bytes. Outputs are
//! binary when the request says `parameters.binary_data_output: true` or asks for the output with
//! `parameters.binary_data: true`; FP32 data is then little-endian, row-major.

use std::cell::Cell;
use std::fmt;

use axum::http::HeaderMap;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use crate::error::ApiError;
use crate::tokenize::Input;

pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON part and the binary data after it.
pub fn split_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "Inference-Header-Content-Length must be a number of bytes",
                "Inference-Header-Content-Length",
            )
        })?;
    if length > body.len() {
        return Err(ApiError::invalid(
            format!(
                "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                body.len()
            ),
            "Inference-Header-Content-Length",
        ));
    }
    Ok(body.split_at(length))
}

/// The texts of a BYTES tensor in binary form, at most `max_inputs` of them.
pub fn binary_texts(mut data: &[u8], max_inputs: usize) -> Result<Vec<Input>, ApiError> {
    let bad = |message: String| ApiError::invalid(message, "binary_data_size");
    let mut texts = Vec::new();
    while !data.is_empty() {
        if texts.len() == max_inputs {
            return Err(too_many(max_inputs));
        }
        let Some((length, rest)) = data.split_first_chunk::<4>() else {
            return Err(bad(format!(
                "BYTES element {} is cut short: {} bytes left where a 4-byte length was expected",
                texts.len(),
                data.len()
            )));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(bad(format!(
                "BYTES element {} says {length} bytes but only {} remain",
                texts.len(),
                rest.len()
            )));
        }
        let (text, rest) = rest.split_at(length);
        let text = std::str::from_utf8(text).map_err(|_| {
            ApiError::invalid(
                format!("BYTES element {} is not valid UTF-8 text", texts.len()),
                "data",
            )
        })?;
        texts.push(Input::Text(text.to_owned()));
        data = rest;
    }
    Ok(texts)
}

/// Row-major little-endian f32 bytes of the vectors.
pub fn fp32_bytes(vectors: &[Vec<f32>]) -> Vec<u8> {
    vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

fn too_many(max_inputs: usize) -> ApiError {
    ApiError::invalid(
        format!("more than {max_inputs} inputs in one request, the server's limit"),
        "data",
    )
}

/// The texts of a BYTES tensor's JSON `data`: strings, nested in arrays to any depth, at most
/// `max_inputs` of them, read without building a JSON tree.
pub fn json_texts(json: &str, max_inputs: usize) -> Result<Vec<Input>, ApiError> {
    let over = Cell::new(false);
    let mut texts = Vec::new();
    let seed = Strings {
        out: &mut texts,
        max: max_inputs,
        over: &over,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let result = seed.deserialize(&mut deserializer);
    if over.get() {
        return Err(too_many(max_inputs));
    }
    result
        .map_err(|err| ApiError::invalid(format!("BYTES data must be strings: {err}"), "data"))?;
    Ok(texts)
}

struct Strings<'o> {
    out: &'o mut Vec<Input>,
    max: usize,
    over: &'o Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Strings<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strings<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("strings, or arrays of strings")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if self.out.len() == self.max {
            self.over.set(true);
            return Err(E::custom("too many inputs"));
        }
        self.out.push(Input::Text(text.to_owned()));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Strings {
                out: &mut *self.out,
                max: self.max,
                over: self.over,
            })?
            .is_some()
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(text: &str) -> Vec<u8> {
        let mut out = (text.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn binary_bytes_elements_become_texts() {
        let data = [element("héllo"), element(""), element("world")].concat();
        assert_eq!(
            binary_texts(&data, 8).unwrap(),
            vec![
                Input::Text("héllo".into()),
                Input::Text(String::new()),
                Input::Text("world".into())
            ]
        );
    }

    #[test]
    fn broken_binary_data_is_rejected_with_the_reason() {
        let mut cut = element("hello");
        cut.truncate(6);
        let err = binary_texts(&cut, 8).unwrap_err();
        assert!(
            err.to_string().contains("says 5 bytes but only 2 remain"),
            "{err}"
        );
        assert!(binary_texts(&[1, 0], 8)
            .unwrap_err()
            .to_string()
            .contains("cut short"));
        assert!(binary_texts(&element("\u{fffd}")[..6], 8).is_err());
        let invalid = [2, 0, 0, 0, 0xff, 0xfe];
        assert!(binary_texts(&invalid, 8)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        let three = [element("a"), element("b"), element("c")].concat();
        assert!(binary_texts(&three, 2)
            .unwrap_err()
            .to_string()
            .contains("more than 2"));
    }

    #[test]
    fn the_header_length_splits_json_from_binary() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, "4".parse().unwrap());
        assert_eq!(
            split_body(&headers, b"{}  rest").unwrap(),
            (&b"{}  "[..], &b"rest"[..])
        );
        headers.insert(HEADER_LENGTH, "99".parse().unwrap());
        assert!(split_body(&headers, b"{}").is_err());
        assert_eq!(split_body(&HeaderMap::new(), b"{}").unwrap().1.len(), 0);
    }

    #[test]
    fn json_data_is_flattened_and_bounded() {
        assert_eq!(json_texts(r#"[["a"], ["b"]]"#, 4).unwrap().len(), 2);
        assert_eq!(json_texts(r#""a""#, 4).unwrap().len(), 1);
        assert!(json_texts("[1]", 4).is_err());
        let many = format!("[{}]", vec![r#""x""#; 100_000].join(","));
        let err = json_texts(&many, 64).unwrap_err();
        assert!(err.to_string().contains("more than 64 inputs"), "{err}");
    }

    #[test]
    fn fp32_data_is_little_endian_row_major() {
        let bytes = fp32_bytes(&[vec![1.0, 2.0], vec![-1.5, 0.0]]);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[8..12], &(-1.5f32).to_le_bytes());
    }
}
