//! The tokenizer of a generation model and its special tokens.
//!
//! A safetensors folder ships `tokenizer.json`. A GGUF file only carries the pieces (vocabulary,
//! merges, token types, special token ids) under llama.cpp's metadata keys; [`from_gguf`] builds
//! from them the tokenizer Hugging Face transformers builds from the same file, so that prompts
//! tokenize the way the model saw them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::Value as Json;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const SCORES: &str = "tokenizer.ggml.scores";
const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// llama.cpp's end-of-turn and end-of-message tokens: generation stops on them as on EOS.
const END_IDS: [&str; 3] = [
    EOS_ID,
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
];

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Architectures whose `llama` (sentencepiece) vocabulary transformers rebuilds in its own way.
const UNSUPPORTED_SENTENCEPIECE: [&str; 4] = ["gemma", "gemma2", "gemma3", "phi3"];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex of a byte-level `tokenizer.ggml.pre`, as transformers maps them. Types not
/// listed keep GPT-2's own regex.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// The ids and texts of a model's special tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The beginning-of-sequence token, when the model has one.
    pub bos: Option<u32>,
    pub bos_text: Option<String>,
    /// Every id that ends generation; the first is the model's own EOS token.
    pub eos: Vec<u32>,
    /// The text of the model's own EOS token (`eos_token` in chat templates).
    pub eos_text: Option<String>,
}

impl SpecialTokens {
    /// The special tokens a GGUF file names (`tokenizer.ggml.*_token_id`).
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let meta = Metadata(content);
        let tokens = meta.strings(TOKENS)?;
        let text = |id: u32| tokens.get(id as usize).map(|token| token.to_string());
        let bos = meta.optional_id(BOS_ID)?;
        let mut eos = Vec::new();
        for key in END_IDS {
            if let Some(id) = meta.optional_id(key)? {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let eos_text = meta.optional_id(EOS_ID)?.and_then(text);
        Ok(Self {
            bos,
            bos_text: bos.and_then(text),
            eos,
            eos_text,
        })
    }
}

/// The tokenizer a GGUF file describes: `gpt2` (byte-level BPE) or `llama` (sentencepiece BPE)
/// vocabularies, with control tokens as special added tokens.
pub fn from_gguf(content: &Content) -> Result<Tokenizer> {
    let meta = Metadata(content);
    let kind = meta.string(MODEL)?;
    let tokens = meta.strings(TOKENS)?;
    let byte_level = match kind {
        "gpt2" => true,
        "llama" => false,
        other => bail!(
            "unsupported tokenizer model '{other}' (GGUF metadata `{MODEL}`); supported: gpt2, llama"
        ),
    };
    let mut tokenizer = if byte_level {
        byte_level_bpe(&meta, &tokens)?
    } else {
        sentencepiece_bpe(&meta, &tokens)?
    };
    add_typed_tokens(&mut tokenizer, &meta, &tokens, byte_level)?;
    let processor = post_processor(&meta, &tokens, !byte_level)?;
    tokenizer.with_post_processor(Some(processor));
    Ok(tokenizer)
}

/// A safetensors folder's `tokenizer.json`, with the special tokens from `tokenizer_config.json`
/// and `generation_config.json` (whose `eos_token_id` may list several ids).
pub fn from_folder(dir: &Path) -> Result<(Tokenizer, SpecialTokens)> {
    let path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&path)
        .map_err(|err| anyhow!("cannot load {}: {err}", path.display()))?;
    let config = read_json(&dir.join("tokenizer_config.json"))?;
    let generation = read_json(&dir.join("generation_config.json"))?;
    let special = folder_special_tokens(&tokenizer, &config, &generation)?;
    Ok((tokenizer, special))
}

fn folder_special_tokens(
    tokenizer: &Tokenizer,
    config: &Json,
    generation: &Json,
) -> Result<SpecialTokens> {
    let id_of = |text: &str| {
        tokenizer
            .token_to_id(text)
            .ok_or_else(|| anyhow!("special token {text:?} is not in the vocabulary"))
    };
    let bos_text = token_text(config, "bos_token")?;
    let bos = match &bos_text {
        Some(text) => Some(id_of(text)?),
        None => json_ids(generation, "bos_token_id")?.into_iter().next(),
    };
    let eos_text = token_text(config, "eos_token")?;
    let mut eos = Vec::new();
    if let Some(text) = &eos_text {
        eos.push(id_of(text)?);
    }
    for id in json_ids(generation, "eos_token_id")? {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let name = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
    Ok(SpecialTokens {
        bos,
        bos_text: bos_text.or_else(|| name(bos)),
        eos_text: eos_text.or_else(|| name(eos.first().copied())),
        eos,
    })
}

/// A JSON file as a value; a missing file reads as an empty object.
fn read_json(path: &Path) -> Result<Json> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(Json::Object(Default::default()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A special token of `tokenizer_config.json`: a string, or an added token `{"content": ...}`.
fn token_text(config: &Json, key: &str) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text.clone())),
        Some(Json::Object(token)) => match token.get("content") {
            Some(Json::String(text)) => Ok(Some(text.clone())),
            _ => bail!("tokenizer_config.json: `{key}` has no string `content`"),
        },
        Some(other) => {
            bail!("tokenizer_config.json: `{key}` is neither a string nor a token: {other}")
        }
    }
}

/// Token ids of `generation_config.json`: one id or a list of them.
fn json_ids(config: &Json, key: &str) -> Result<Vec<u32>> {
    let one = |value: &Json| {
        value
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| anyhow!("generation_config.json: `{key}` holds {value}, not a token id"))
    };
    match config.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(ids)) => ids.iter().map(one).collect(),
        Some(id) => Ok(vec![one(id)?]),
    }
}

/// GPT-2 style BPE over the byte alphabet, with transformers' pre-tokenizer for the `pre` type.
fn byte_level_bpe(meta: &Metadata, tokens: &[&str]) -> Result<Tokenizer> {
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(byte_spelling(token)?, id as u32);
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges(meta, tokens)?)
        .build()
        .map_err(|err| {
            anyhow!("cannot build the BPE model from GGUF metadata `{MERGES}`: {err}")
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(byte_level_pre_tokenizer(meta.optional_string(PRE)?)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

fn byte_level_pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper> {
    let pre = pre.unwrap_or_default();
    // SmolLM's own tokenizer.json isolates every digit before the GPT-2 regex.
    if pre == "smollm" {
        let steps = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        return Ok(PreTokenizerSequence::new(steps).into());
    }
    let Some(regex) = split_regex(pre) else {
        return Ok(ByteLevel::new(false, true, true).into());
    };
    let split = Split::new(
        SplitPattern::Regex(regex.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|err| anyhow!("bad split regex for GGUF metadata `{PRE}` = {pre:?}: {err}"))?;
    let steps = vec![split.into(), ByteLevel::new(false, true, false).into()];
    Ok(PreTokenizerSequence::new(steps).into())
}

/// A token as the byte-level vocabulary spells it: tokens already in the byte alphabet stay as
/// they are, others (added tokens written as plain text) are respelled from their UTF-8 bytes.
fn byte_spelling(token: &str) -> Result<String> {
    if in_byte_alphabet(token) {
        return Ok(token.to_owned());
    }
    let mut text = PreTokenizedString::from(token);
    ByteLevel::new(false, true, false)
        .pre_tokenize(&mut text)
        .map_err(|err| anyhow!("cannot respell token {token:?} in the byte alphabet: {err}"))?;
    let splits = text.get_splits(OffsetReferential::Original, OffsetType::Byte);
    Ok(splits.into_iter().map(|(piece, _, _)| piece).collect())
}

fn in_byte_alphabet(token: &str) -> bool {
    let alphabet = ByteLevel::alphabet();
    token.chars().all(|c| alphabet.contains(&c))
}

/// Sentencepiece-style BPE (`llama`): `▁` for spaces, byte fallback, transformers' Llama decoder.
fn sentencepiece_bpe(meta: &Metadata, tokens: &[&str]) -> Result<Tokenizer> {
    let architecture = meta
        .optional_string("general.architecture")?
        .unwrap_or_default();
    if UNSUPPORTED_SENTENCEPIECE.contains(&architecture) {
        bail!(
            "unsupported tokenizer model 'llama' for architecture '{architecture}' \
             (GGUF metadata `{MODEL}`, `general.architecture`)"
        );
    }
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges(meta, tokens)?)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = meta.optional_id(UNK_ID)? {
        builder = builder.unk_token(token_at(tokens, unk, UNK_ID)?.to_owned());
    }
    let bpe = builder
        .build()
        .map_err(|err| anyhow!("cannot build the BPE model from GGUF metadata: {err}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    tokenizer.with_decoder(Some(sentencepiece_decoder()?));
    Ok(tokenizer)
}

fn sentencepiece_decoder() -> Result<DecoderSequence> {
    let replace = Replace::new("▁", " ").map_err(|err| anyhow!("{err}"))?;
    let steps: Vec<DecoderWrapper> = vec![
        replace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', 1, 0).into(),
    ];
    Ok(DecoderSequence::new(steps))
}

/// The file's merges, or for sentencepiece files without any, the merges its scores imply.
fn merges(meta: &Metadata, tokens: &[&str]) -> Result<Merges> {
    if meta.has(MERGES) {
        return meta.strings(MERGES)?.into_iter().map(split_merge).collect();
    }
    let Some(scores) = meta.optional_floats(SCORES)? else {
        bail!("GGUF metadata has neither `{MERGES}` nor `{SCORES}`");
    };
    Ok(merges_from_scores(tokens, &scores))
}

fn split_merge(merge: &str) -> Result<(String, String)> {
    let (left, right) = merge
        .split_once(' ')
        .ok_or_else(|| anyhow!("GGUF metadata `{MERGES}` holds {merge:?}, not two tokens"))?;
    Ok((left.to_owned(), right.to_owned()))
}

/// transformers' `generate_merges`: every split of a token into two vocabulary tokens, best
/// merged-token score first (ties: shorter left part, then shorter right part).
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Merges {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (*token, id))
        .collect();
    let mut candidates = Vec::new();
    for (token, score) in tokens.iter().zip(scores) {
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(left, right)| ids.contains_key(left) && ids.contains_key(right))
            .collect();
        local.sort_by_key(|(left, right)| (ids[left], ids[right]));
        candidates.extend(local.into_iter().map(|(left, right)| (left, right, *score)));
    }
    let key = |(left, right, _): &(&str, &str, f64)| (left.chars().count(), right.chars().count());
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| key(b).cmp(&key(a))));
    candidates
        .into_iter()
        .map(|(left, right, _)| (left.to_owned(), right.to_owned()))
        .collect()
}

/// Control tokens become special added tokens and user-defined ones plain added tokens, so that
/// both match whole in text. A byte-level control token spelled outside the byte alphabet is a
/// mislabel that transformers skips, and so does this.
fn add_typed_tokens(
    tokenizer: &mut Tokenizer,
    meta: &Metadata,
    tokens: &[&str],
    byte_level: bool,
) -> Result<()> {
    let Some(types) = meta.optional_ints(TOKEN_TYPE)? else {
        return Ok(());
    };
    if types.len() != tokens.len() {
        bail!(
            "GGUF metadata `{TOKEN_TYPE}` has {} entries but `{TOKENS}` has {}",
            types.len(),
            tokens.len()
        );
    }
    let typed = |wanted: i64| {
        tokens
            .iter()
            .zip(&types)
            .filter(move |(_, kind)| **kind == wanted)
            .map(|(t, _)| *t)
    };
    let control: Vec<AddedToken> = typed(CONTROL)
        .filter(|token| !byte_level || in_byte_alphabet(token))
        .map(|token| AddedToken::from(token, true))
        .collect();
    tokenizer
        .add_special_tokens(control)
        .map_err(|err| anyhow!("cannot add the control tokens of `{TOKEN_TYPE}`: {err}"))?;
    let user_defined: Vec<AddedToken> = typed(USER_DEFINED)
        .filter(|token| tokenizer.token_to_id(token).is_some())
        .map(|token| AddedToken::from(token, false).normalized(false))
        .collect();
    tokenizer
        .add_tokens(user_defined)
        .map_err(|err| anyhow!("cannot add the user-defined tokens of `{TOKEN_TYPE}`: {err}"))?;
    Ok(())
}

/// Adds BOS/EOS around a sequence as `tokenizer.ggml.add_bos_token` and `add_eos_token` say
/// (BOS by default for sentencepiece vocabularies, as llama.cpp does).
fn post_processor(
    meta: &Metadata,
    tokens: &[&str],
    default_bos: bool,
) -> Result<TemplateProcessing> {
    let bos = flagged_token(meta, tokens, ADD_BOS, default_bos, BOS_ID)?;
    let eos = flagged_token(meta, tokens, ADD_EOS, false, EOS_ID)?;
    let around = |sequence: &str, type_id: u8| {
        let mut pieces = Vec::new();
        pieces.extend(bos.map(|(text, _)| format!("{text}:{type_id}")));
        pieces.push(format!("${sequence}:{type_id}"));
        pieces.extend(eos.map(|(text, _)| format!("{text}:{type_id}")));
        pieces.join(" ")
    };
    let single = around("A", 0);
    let pair = format!("{single} {}", around("B", 1));
    let specials: Vec<(String, u32)> = bos
        .into_iter()
        .chain(eos)
        .map(|(text, id)| (text.to_owned(), id))
        .collect();
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|builder| builder.try_pair(pair))
        .map_err(|err| anyhow!("bad post-processor template: {err}"))?
        .special_tokens(specials)
        .build()
        .map_err(|err| anyhow!("bad post-processor template: {err}"))
}

/// The token to add when `flag` is on (or absent and `default` is on) and the file names one.
fn flagged_token<'t>(
    meta: &Metadata,
    tokens: &[&'t str],
    flag: &str,
    default: bool,
    id_key: &str,
) -> Result<Option<(&'t str, u32)>> {
    if !meta.optional_bool(flag)?.unwrap_or(default) {
        return Ok(None);
    }
    let Some(id) = meta.optional_id(id_key)? else {
        return Ok(None);
    };
    Ok(Some((token_at(tokens, id, id_key)?, id)))
}

fn token_at<'t>(tokens: &[&'t str], id: u32, key: &str) -> Result<&'t str> {
    tokens.get(id as usize).copied().ok_or_else(|| {
        anyhow!(
            "GGUF metadata `{key}` = {id} is past the {} tokens",
            tokens.len()
        )
    })
}

/// Typed reads of GGUF metadata, with errors that name the key.
struct Metadata<'a>(&'a Content);

impl<'a> Metadata<'a> {
    fn has(&self, key: &str) -> bool {
        self.0.metadata.contains_key(key)
    }

    fn get(&self, key: &str) -> Result<&'a Value> {
        self.0
            .metadata
            .get(key)
            .ok_or_else(|| anyhow!("GGUF metadata has no `{key}`"))
    }

    fn string(&self, key: &str) -> Result<&'a str> {
        as_str(self.get(key)?, key)
    }

    fn optional_string(&self, key: &str) -> Result<Option<&'a str>> {
        self.optional(key, as_str)
    }

    fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        array(self.get(key)?, key)?
            .iter()
            .map(|value| as_str(value, key))
            .collect()
    }

    fn optional_ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.optional(key, |value, key| {
            array(value, key)?.iter().map(|v| as_int(v, key)).collect()
        })
    }

    fn optional_floats(&self, key: &str) -> Result<Option<Vec<f64>>> {
        self.optional(key, |value, key| {
            array(value, key)?
                .iter()
                .map(|v| as_float(v, key))
                .collect()
        })
    }

    fn optional_id(&self, key: &str) -> Result<Option<u32>> {
        self.optional(key, |value, key| {
            let id = as_int(value, key)?;
            u32::try_from(id).map_err(|_| anyhow!("GGUF metadata `{key}` = {id} is not a token id"))
        })
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        self.optional(key, |value, key| match value {
            Value::Bool(flag) => Ok(*flag),
            other => Err(wrong_type(other, key, "a bool")),
        })
    }

    fn optional<T>(
        &self,
        key: &str,
        read: impl Fn(&'a Value, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        self.0
            .metadata
            .get(key)
            .map(|value| read(value, key))
            .transpose()
    }
}

fn array<'a>(value: &'a Value, key: &str) -> Result<&'a [Value]> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(wrong_type(other, key, "an array")),
    }
}

fn as_str<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(wrong_type(other, key, "a string")),
    }
}

fn as_int(value: &Value, key: &str) -> Result<i64> {
    let int = match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::I64(v) => *v,
        Value::U64(v) => i64::try_from(*v)
            .map_err(|_| anyhow!("GGUF metadata `{key}` holds {v}, out of range"))?,
        other => return Err(wrong_type(other, key, "an integer")),
    };
    Ok(int)
}

fn as_float(value: &Value, key: &str) -> Result<f64> {
    match value {
        Value::F32(v) => Ok(f64::from(*v)),
        Value::F64(v) => Ok(*v),
        other => Err(wrong_type(other, key, "a float")),
    }
}

fn wrong_type(value: &Value, key: &str, wanted: &str) -> anyhow::Error {
    anyhow!(
        "GGUF metadata `{key}` is {:?}, not {wanted}",
        value.value_type()
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};

    /// The SmolLM2 GGUF fetched by `scripts/fetch-llm.sh`, or `None` (outside CI) when absent.
    pub(crate) fn smollm2_gguf() -> Option<Content> {
        let dir = std::env::var_os("KANDLE_LLM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../.model-cache/SmolLM2-135M-Instruct")
            });
        let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing: run scripts/fetch-llm.sh",
                path.display()
            );
            eprintln!(
                "skipped: {} is missing; run scripts/fetch-llm.sh",
                path.display()
            );
            return None;
        }
        let mut file = std::fs::File::open(&path).expect("open the GGUF file");
        Some(Content::read(&mut file).expect("read the GGUF header"))
    }

    /// The SmolLM2 tokenizer, built once for all tests.
    pub(crate) fn smollm2_tokenizer() -> Option<Arc<Tokenizer>> {
        static TOKENIZER: OnceLock<Option<Arc<Tokenizer>>> = OnceLock::new();
        TOKENIZER
            .get_or_init(|| {
                let content = smollm2_gguf()?;
                Some(Arc::new(
                    from_gguf(&content).expect("build the SmolLM2 tokenizer"),
                ))
            })
            .clone()
    }

    fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer
            .encode(text, true)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn smollm2_matches_transformers_on_a_sample() {
        let Some(tokenizer) = smollm2_tokenizer() else {
            return;
        };
        // Expected ids from transformers' AutoTokenizer on the same GGUF file.
        assert_eq!(
            ids(&tokenizer, "Hello 12345 world<|im_start|>"),
            [19556, 216, 33, 34, 35, 36, 37, 905, 1]
        );
        assert_eq!(tokenizer.get_vocab_size(true), 49152);
    }

    #[test]
    fn chat_markers_are_single_special_tokens() {
        let Some(tokenizer) = smollm2_tokenizer() else {
            return;
        };
        assert_eq!(ids(&tokenizer, "<|im_start|>user\n"), [1, 4093, 198]);
        let round_trip = tokenizer.decode(&[1, 4093, 198, 2], true).expect("decode");
        assert_eq!(round_trip, "user\n");
    }

    #[test]
    fn smollm2_special_tokens() {
        let Some(content) = smollm2_gguf() else {
            return;
        };
        let special = SpecialTokens::from_gguf(&content).expect("special tokens");
        assert_eq!(special.bos, Some(1));
        assert_eq!(special.bos_text.as_deref(), Some("<|im_start|>"));
        assert_eq!(special.eos, [2]);
        assert_eq!(special.eos_text.as_deref(), Some("<|im_end|>"));
    }

    fn content(entries: Vec<(&str, Value)>) -> Content {
        Content {
            magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
            metadata: entries
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    fn strings(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|item| Value::String(item.to_string()))
                .collect(),
        )
    }

    #[test]
    fn errors_name_the_metadata_key() {
        let err = from_gguf(&content(vec![])).unwrap_err().to_string();
        assert!(err.contains("`tokenizer.ggml.model`"), "{err}");

        let unigram = content(vec![
            (MODEL, Value::String("t5".into())),
            (TOKENS, strings(&["a"])),
        ]);
        let err = from_gguf(&unigram).unwrap_err().to_string();
        assert!(err.contains("unsupported tokenizer model 't5'"), "{err}");

        let no_tokens = content(vec![(MODEL, Value::String("gpt2".into()))]);
        let err = from_gguf(&no_tokens).unwrap_err().to_string();
        assert!(err.contains("`tokenizer.ggml.tokens`"), "{err}");

        let bad_type = content(vec![
            (MODEL, Value::String("gpt2".into())),
            (TOKENS, Value::U32(3)),
        ]);
        let err = from_gguf(&bad_type).unwrap_err().to_string();
        assert!(
            err.contains("`tokenizer.ggml.tokens` is U32, not an array"),
            "{err}"
        );
    }

    /// A sentencepiece vocabulary without merges: they come from the scores, BOS is added.
    #[test]
    fn sentencepiece_vocabulary_from_scores() {
        let tokens = [
            "<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "hi", "▁hi", "<0x21>",
        ];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -0.5, 0.0];
        let types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 6];
        let file = content(vec![
            (MODEL, Value::String("llama".into())),
            (TOKENS, strings(&tokens)),
            (
                SCORES,
                Value::Array(scores.iter().map(|s| Value::F32(*s)).collect()),
            ),
            (
                TOKEN_TYPE,
                Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
            ),
            (BOS_ID, Value::U32(1)),
            (EOS_ID, Value::U32(2)),
            (UNK_ID, Value::U32(0)),
        ]);
        let tokenizer = from_gguf(&file).expect("build");
        assert_eq!(ids(&tokenizer, "hi hi!"), [1, 8, 8, 9]);
        assert_eq!(
            tokenizer.decode(&[1, 8, 8, 9], true).expect("decode"),
            "hi hi!"
        );
    }

    #[test]
    fn every_mapped_pre_type_compiles() {
        for pre in [
            "llama-bpe",
            "tekken",
            "qwen2",
            "qwen35",
            "gpt-4o",
            "smollm",
            "unknown",
        ] {
            byte_level_pre_tokenizer(Some(pre)).unwrap_or_else(|err| panic!("{pre}: {err}"));
        }
        let llama3 = byte_level_pre_tokenizer(Some("llama-bpe")).expect("llama-bpe");
        let mut text = PreTokenizedString::from("Hi  there1234");
        llama3.pre_tokenize(&mut text).expect("pre-tokenize");
        let pieces: Vec<String> = text
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_owned())
            .collect();
        assert_eq!(pieces, ["Hi", "Ġ", "Ġthere", "123", "4"]);
    }

    #[test]
    fn from_folder_reads_tokenizer_json_and_both_configs() {
        let Some(tokenizer) = smollm2_tokenizer() else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("kandle-tokenizer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let json = tokenizer.to_string(false).expect("serialize");
        std::fs::write(dir.join("tokenizer.json"), json).expect("write");
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"eos_token": "<|im_end|>"}"#,
        )
        .expect("write");
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"bos_token_id": 1, "eos_token_id": [2, 0]}"#,
        )
        .expect("write");
        let (loaded, special) = from_folder(&dir).expect("load the folder");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(
            loaded
                .encode("<|im_start|>hi", false)
                .expect("encode")
                .get_ids(),
            [1, 6004]
        );
        assert_eq!(special.bos, Some(1));
        assert_eq!(special.bos_text.as_deref(), Some("<|im_start|>"));
        assert_eq!(special.eos, [2, 0]);
    }

    #[test]
    fn folder_special_tokens_read_both_configs() {
        let Some(tokenizer) = smollm2_tokenizer() else {
            return;
        };
        let config = serde_json::json!({
            "bos_token": {"content": "<|im_start|>", "special": true},
            "eos_token": "<|im_end|>",
        });
        let generation = serde_json::json!({"bos_token_id": 1, "eos_token_id": [2, 0]});
        let special = folder_special_tokens(&tokenizer, &config, &generation).expect("special");
        assert_eq!(special.bos, Some(1));
        assert_eq!(special.eos, [2, 0]);
        assert_eq!(special.eos_text.as_deref(), Some("<|im_end|>"));

        let only_ids =
            folder_special_tokens(&tokenizer, &Json::Null, &generation).expect("special");
        assert_eq!(only_ids.bos_text.as_deref(), Some("<|im_start|>"));
        assert_eq!(only_ids.eos_text.as_deref(), Some("<|im_end|>"));
    }
}
