//! SmolLM2's tokenizer, chat template and streaming detokenizer, built from its GGUF file,
//! against Hugging Face transformers' output on the same file (`tests/data/smollm2/`).
//!
//! The GGUF file comes from `scripts/fetch-llm.sh`, which the test command runs first.

mod common;

use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use kandle_runtime::generate::chat_template::{ChatMessage, ChatTemplate};
use kandle_runtime::generate::detokenize::{self, IncrementalDecoder};
use kandle_runtime::generate::tokenizer::{self, SpecialTokens};
use serde::Deserialize;
use tokenizers::Tokenizer;

#[derive(Deserialize)]
struct Reference {
    tokenization: Vec<Tokenization>,
    chat: Vec<Chat>,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Tokenization {
    text: String,
    /// Without special tokens added.
    ids: Vec<u32>,
    /// Present only where adding special tokens changes the ids.
    ids_with_special: Option<Vec<u32>>,
    /// `tokenizer.decode(ids)`, special tokens kept.
    decoded: String,
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    rendered: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    text: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    /// `tokenizer.decode(greedy)`, special tokens kept.
    greedy_text: String,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/smollm2/reference.json"
    );
    let text = std::fs::read_to_string(path).expect("the SmolLM2 reference is committed");
    serde_json::from_str(&text).expect("the SmolLM2 reference parses")
}

/// The GGUF header of the test model.
fn gguf() -> Content {
    let mut file = std::fs::File::open(common::llm_file()).expect("open the GGUF file");
    Content::read(&mut file).expect("read the GGUF header")
}

fn smollm2() -> (Content, Arc<Tokenizer>) {
    let content = gguf();
    let tokenizer = tokenizer::from_gguf(&content).expect("build the tokenizer");
    (content, Arc::new(tokenizer))
}

fn encode(tokenizer: &Tokenizer, text: &str, add_special_tokens: bool) -> Vec<u32> {
    let encoding = tokenizer
        .encode(text, add_special_tokens)
        .unwrap_or_else(|err| panic!("encode {text:?}: {err}"));
    encoding.get_ids().to_vec()
}

fn streamed(tokenizer: &Arc<Tokenizer>, ids: &[u32]) -> String {
    let mut decoder = IncrementalDecoder::new(tokenizer.clone());
    let mut text = String::new();
    for id in ids {
        text += &decoder.step(*id).expect("step");
    }
    text + &decoder.finish().expect("finish")
}

#[test]
fn tokenization_matches_transformers() {
    let (_, tokenizer) = smollm2();
    let cases = reference().tokenization;
    for case in &cases {
        assert_eq!(
            encode(&tokenizer, &case.text, false),
            case.ids,
            "ids of {:?}",
            case.text
        );
        let with_special = case.ids_with_special.as_ref().unwrap_or(&case.ids);
        assert_eq!(
            &encode(&tokenizer, &case.text, true),
            with_special,
            "ids with special tokens of {:?}",
            case.text
        );
        let decoded = tokenizer.decode(&case.ids, false).expect("decode");
        assert_eq!(decoded, case.decoded, "decode of {:?}", case.text);
    }
    eprintln!("{} texts match", cases.len());
}

#[test]
fn prompts_tokenize_as_in_transformers() {
    let (_, tokenizer) = smollm2();
    for prompt in reference().prompts {
        assert_eq!(
            encode(&tokenizer, &prompt.text, false),
            prompt.ids,
            "ids of prompt {}",
            prompt.name
        );
    }
}

#[test]
fn streaming_adds_up_to_the_full_decode() {
    let (_, tokenizer) = smollm2();
    let reference = reference();
    let sequences = reference.tokenization.iter().map(|case| &case.ids);
    let greedy = reference.prompts.iter().map(|prompt| &prompt.greedy);
    for ids in sequences.chain(greedy) {
        let full = detokenize::decode(&tokenizer, ids).expect("decode");
        assert_eq!(
            streamed(&tokenizer, ids),
            full,
            "streamed decode of {ids:?}"
        );
    }
    for prompt in &reference.prompts {
        let kept = tokenizer.decode(&prompt.greedy, false).expect("decode");
        assert_eq!(
            kept, prompt.greedy_text,
            "greedy text of prompt {}",
            prompt.name
        );
    }
}

#[test]
fn special_tokens_stay_out_of_streamed_text() {
    let (_, tokenizer) = smollm2();
    let ids = encode(&tokenizer, "<|im_start|>assistant\nParis.<|im_end|>", false);
    assert_eq!(streamed(&tokenizer, &ids), "assistant\nParis.");
}

#[test]
fn chat_templates_match_transformers() {
    let (content, tokenizer) = smollm2();
    let special = SpecialTokens::from_gguf(&content).expect("special tokens");
    let template = ChatTemplate::from_gguf(&content, &special)
        .expect("compile the chat template")
        .expect("SmolLM2 has a chat template");
    let cases = reference().chat;
    for case in &cases {
        let rendered = template
            .render(&case.messages, case.add_generation_prompt)
            .expect("render");
        assert_eq!(rendered, case.rendered, "rendering of {:?}", case.messages);
        assert_eq!(
            encode(&tokenizer, &rendered, false),
            case.ids,
            "ids of {rendered:?}"
        );
    }
    eprintln!("{} conversations match", cases.len());
}
