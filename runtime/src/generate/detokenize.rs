//! Turning generated token ids back into text, one token at a time for streaming.
//!
//! A byte-level token can end in the middle of a UTF-8 character (CJK and emoji often take two
//! or three tokens), so a token's text is only sent once the characters it starts are complete.
//! The pieces always add up to decoding all the ids at once. Special tokens (`<|im_end|>`, ...)
//! are left out of the text, as OpenAI-style responses expect.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use tokenizers::Tokenizer;

/// Whether the text of a generation shows special tokens; never, so that chat markers and EOS
/// stay out of responses.
const SKIP_SPECIAL_TOKENS: bool = true;

/// All of `ids` as text, the same text an [`IncrementalDecoder`] streams for them.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, SKIP_SPECIAL_TOKENS)
        .map_err(|err| anyhow!("cannot decode tokens: {err}"))
}

/// Streams the text of a sequence as its tokens arrive.
///
/// It keeps a window of ids that starts where the last complete text ended (the prefix), decodes
/// the window after each new id, and sends what follows the prefix's text unless it ends in
/// U+FFFD, the mark of an incomplete character. This is the state of the `tokenizers` crate's
/// `DecodeStream`, held here without borrowing the tokenizer so that a sequence can own it.
pub struct IncrementalDecoder {
    tokenizer: Arc<Tokenizer>,
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl IncrementalDecoder {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_index: 0,
        }
    }

    /// The text that `id` completes; empty while a character is still incomplete.
    pub fn step(&mut self, id: u32) -> Result<String> {
        let piece = tokenizers::step_decode_stream(
            &**self.tokenizer,
            vec![id],
            SKIP_SPECIAL_TOKENS,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        .map_err(|err| anyhow!("cannot decode token {id}: {err}"))?;
        Ok(piece.unwrap_or_default())
    }

    /// The text still held back when the sequence ends: an incomplete character comes out as
    /// U+FFFD, as a full decode writes it.
    pub fn finish(self) -> Result<String> {
        let text = decode(&self.tokenizer, &self.ids)?;
        text.strip_prefix(self.prefix.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "decoded text {text:?} does not start with the text already sent {:?}",
                    self.prefix
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tokenizer::tests::smollm2_tokenizer;
    use proptest::prelude::*;
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;

    /// Every piece `ids` streams, the flush last.
    fn pieces(tokenizer: &Arc<Tokenizer>, ids: &[u32]) -> Vec<String> {
        let mut decoder = IncrementalDecoder::new(tokenizer.clone());
        let mut pieces: Vec<String> = ids
            .iter()
            .map(|id| decoder.step(*id).expect("step"))
            .collect();
        pieces.push(decoder.finish().expect("finish"));
        pieces
    }

    /// A byte-level vocabulary of the 256 single bytes, one merge and one special token.
    fn bytes_tokenizer() -> Arc<Tokenizer> {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let mut vocab: Vocab = alphabet
            .iter()
            .enumerate()
            .map(|(id, c)| (c.to_string(), id as u32))
            .collect();
        vocab.insert("ĠĠ".to_owned(), 256);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![("Ġ".to_owned(), "Ġ".to_owned())])
            .build()
            .expect("bpe");
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        tokenizer
            .add_special_tokens([AddedToken::from("<|end|>", true)])
            .expect("special");
        Arc::new(tokenizer)
    }

    fn encode(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn split_characters_wait_until_complete() {
        let tokenizer = bytes_tokenizer();
        let ids = encode(&tokenizer, "a你😀");
        // One token per byte: 1 + 3 + 4.
        assert_eq!(ids.len(), 8);
        let streamed = pieces(&tokenizer, &ids);
        assert_eq!(streamed, ["a", "", "", "你", "", "", "", "😀", ""]);
    }

    #[test]
    fn an_incomplete_tail_is_flushed_as_a_replacement_character() {
        let tokenizer = bytes_tokenizer();
        let ids = encode(&tokenizer, "é你");
        let cut = &ids[..ids.len() - 1];
        let streamed = pieces(&tokenizer, cut);
        assert_eq!(streamed.concat(), decode(&tokenizer, cut).expect("decode"));
        assert_eq!(streamed.last().map(String::as_str), Some("\u{FFFD}"));
    }

    #[test]
    fn special_tokens_are_left_out() {
        let tokenizer = bytes_tokenizer();
        let end = tokenizer.token_to_id("<|end|>").expect("special token");
        let mut ids = vec![end];
        ids.extend(encode(&tokenizer, "hi"));
        ids.push(end);
        assert_eq!(pieces(&tokenizer, &ids).concat(), "hi");
        assert_eq!(decode(&tokenizer, &ids).expect("decode"), "hi");
    }

    proptest! {
        #[test]
        fn pieces_add_up_to_a_full_decode(ids in proptest::collection::vec(0u32..258, 0..40)) {
            let tokenizer = bytes_tokenizer();
            let streamed = pieces(&tokenizer, &ids);
            prop_assert_eq!(streamed.concat(), decode(&tokenizer, &ids).expect("decode"));
            for piece in &streamed[..ids.len()] {
                prop_assert!(!piece.ends_with('\u{FFFD}'), "{:?}", streamed);
            }
        }
    }

    #[test]
    fn smollm2_streams_chinese_and_emoji_whole() {
        let Some(tokenizer) = smollm2_tokenizer() else {
            return;
        };
        let text = "Hello 世界! 🎉🦀 naïve café — 日本語のテキスト 👍🏽";
        let mut ids = encode(&tokenizer, text);
        ids.push(2);
        let streamed = pieces(&tokenizer, &ids);
        assert_eq!(streamed.concat(), text);
        assert!(
            streamed.iter().all(|piece| !piece.contains('\u{FFFD}')),
            "{streamed:?}"
        );
        // Some character of the text spans several tokens, so some step sends nothing.
        assert!(
            streamed[..ids.len()].iter().any(String::is_empty),
            "{streamed:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn smollm2_pieces_add_up(ids in proptest::collection::vec(0u32..49152, 0..24)) {
            let Some(tokenizer) = smollm2_tokenizer() else { return Ok(()) };
            let streamed = pieces(&tokenizer, &ids);
            prop_assert_eq!(streamed.concat(), decode(&tokenizer, &ids).expect("decode"));
        }
    }
}
