//! Hugging Face safetensors folders of the Llama family, checked without Python. The test makes
//! one from the GGUF test model by undoing what llama.cpp's converter did (every tensor
//! dequantized to f32 under its Hugging Face name, the Q and K row permutation reversed, the
//! tokenizer and chat template written as `tokenizer.json` and `tokenizer_config.json`), then
//! reads it back through the safetensors loader:
//!
//! - f32: logits match the transformers reference (cosine >= 0.9999 at every recorded position)
//!   and greedy continuations are identical for 32 tokens;
//! - f16 and bf16 copies, held in f32 (the CPU default) or as stored (bf16 is held as f16): the
//!   reference's first 8 greedy tokens;
//! - the tokenizer and chat template of the folder agree with transformers;
//! - the server, with `--task auto`, serves the folder as a generation model.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use common::generation::{assert_matches_reference, greedy, reference, reference_logits};
use common::{TestServer, LLM_NAME};
use kandle_runtime::generate::chat_template::ChatTemplate;
use kandle_runtime::generate::llama::{Llama, WeightFormat};
use kandle_runtime::generate::safetensors::Checkpoint;
use kandle_runtime::generate::tokenizer::{self, SpecialTokens};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The test model as Hugging Face folders, one per stored type.
struct Folders {
    f32: PathBuf,
    f16: PathBuf,
    bf16: PathBuf,
}

/// The folders, made once per run under Cargo's temporary folder for integration tests.
fn folders() -> &'static Folders {
    static FOLDERS: OnceLock<Folders> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        let content = gguf();
        let tensors = hf_tensors(&content);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smollm2-safetensors");
        let folder = |dtype: DType| {
            let dir = root.join(dtype.as_str());
            write_folder(&dir, &content, &tensors, dtype);
            dir
        };
        Folders {
            f32: folder(DType::F32),
            f16: folder(DType::F16),
            bf16: folder(DType::BF16),
        }
    })
}

fn gguf() -> Content {
    let mut file = std::fs::File::open(common::llm_file()).unwrap();
    Content::read(&mut file).unwrap()
}

fn meta<'a>(content: &'a Content, key: &str) -> &'a candle_core::quantized::gguf_file::Value {
    content
        .metadata
        .get(key)
        .unwrap_or_else(|| panic!("the GGUF file has no `{key}`"))
}

fn meta_u32(content: &Content, key: &str) -> usize {
    meta(content, key).to_u32().unwrap() as usize
}

/// Every tensor of the GGUF file, dequantized to f32, under its Hugging Face name.
fn hf_tensors(content: &Content) -> HashMap<String, Tensor> {
    let mut file = std::fs::File::open(common::llm_file()).unwrap();
    let heads = meta_u32(content, "llama.attention.head_count");
    let kv_heads = meta_u32(content, "llama.attention.head_count_kv");
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let tensor = match name.rsplit('.').nth(1) {
            Some("attn_q") => unpermute(&tensor, heads),
            Some("attn_k") => unpermute(&tensor, kv_heads),
            _ => tensor,
        };
        tensors.insert(hf_name(name), tensor);
    }
    tensors
}

/// Reverses llama.cpp's permutation of Q and K rows, which it applies to the Hugging Face weight
/// as `w.reshape(heads, 2, head_dim / 2, in).swapaxes(1, 2).reshape(out, in)`.
fn unpermute(weight: &Tensor, heads: usize) -> Tensor {
    let (out, columns) = weight.dims2().unwrap();
    weight
        .reshape((heads, out / heads / 2, 2, columns))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, columns))
        .unwrap()
}

fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".to_owned(),
        "output_norm.weight" => return "model.norm.weight".to_owned(),
        "output.weight" => return "lm_head.weight".to_owned(),
        _ => {}
    }
    let (layer, part) = gguf
        .strip_prefix("blk.")
        .and_then(|rest| rest.strip_suffix(".weight"))
        .and_then(|rest| rest.split_once('.'))
        .unwrap_or_else(|| panic!("unexpected GGUF tensor {gguf}"));
    let part = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => panic!("unexpected GGUF tensor {gguf}"),
    };
    format!("model.layers.{layer}.{part}.weight")
}

/// `config.json` as transformers writes it for this model.
fn config_json(content: &Content, tensors: &HashMap<String, Tensor>, dtype: DType) -> Value {
    let u = |key: &str| meta_u32(content, &format!("llama.{key}"));
    let f = |key: &str| meta(content, &format!("llama.{key}")).to_f32().unwrap();
    let vocab = tensors["model.embed_tokens.weight"].dim(0).unwrap();
    let torch_dtype = match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        _ => "bfloat16",
    };
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": u("embedding_length"),
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": u("block_count"),
        "num_attention_heads": u("attention.head_count"),
        "num_key_value_heads": u("attention.head_count_kv"),
        "rms_norm_eps": f("attention.layer_norm_rms_epsilon"),
        "rope_theta": f("rope.freq_base"),
        "max_position_embeddings": u("context_length"),
        "vocab_size": vocab,
        "tie_word_embeddings": !tensors.contains_key("lm_head.weight"),
        "torch_dtype": torch_dtype,
        "rope_scaling": null,
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
    })
}

fn write_folder(dir: &Path, content: &Content, tensors: &HashMap<String, Tensor>, dtype: DType) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let stored: HashMap<&String, Tensor> = tensors
        .iter()
        .map(|(name, t)| (name, t.to_dtype(dtype).unwrap()))
        .collect();
    candle_core::safetensors::save(&stored, dir.join("model.safetensors")).unwrap();
    let write = |name: &str, value: Value| std::fs::write(dir.join(name), value.to_string());
    write("config.json", config_json(content, tensors, dtype)).unwrap();
    tokenizer::from_gguf(content)
        .unwrap()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let special = SpecialTokens::from_gguf(content).unwrap();
    let template = meta(content, "tokenizer.chat_template")
        .to_string()
        .unwrap();
    let tokenizer_config = json!({
        "bos_token": special.bos_text,
        "eos_token": special.eos_text,
        "chat_template": template,
    });
    write("tokenizer_config.json", tokenizer_config).unwrap();
    let generation_config = json!({"bos_token_id": special.bos, "eos_token_id": special.eos});
    write("generation_config.json", generation_config).unwrap();
}

fn load(dir: &Path, format: WeightFormat) -> Llama {
    Checkpoint::open(dir)
        .unwrap()
        .load(&Device::Cpu, format)
        .unwrap()
}

#[test]
fn an_f32_folder_matches_transformers_logits_and_greedy_text() {
    let reference = reference();
    let expected = reference_logits(&reference);
    let model = load(&folders().f32, WeightFormat::Dequantized(DType::F32));
    let mut worst = 1.0f64;
    for prompt in &reference.prompts {
        worst = worst.min(assert_matches_reference(&model, prompt, &expected));
    }
    for name in ["english", "chat"] {
        let prompt = reference.prompt(name);
        let tokens = greedy(&model, &prompt.ids, prompt.greedy.len());
        assert_eq!(tokens, prompt.greedy, "{name}: greedy continuation");
    }
    eprintln!("worst logits cosine against transformers: {worst:.6}");
}

/// The first 8 greedy tokens of the `english` prompt from `dir` held in f32 and as stored.
fn assert_short_greedy_matches(dir: &Path, stored: DType) {
    assert_eq!(Checkpoint::open(dir).unwrap().stored_dtype, stored);
    let reference = reference();
    let prompt = reference.prompt("english");
    for format in [
        WeightFormat::Dequantized(DType::F32),
        WeightFormat::Quantized,
    ] {
        let tokens = greedy(&load(dir, format), &prompt.ids, 8);
        assert_eq!(
            tokens,
            prompt.greedy[..8],
            "{stored:?} folder held as {format:?}"
        );
    }
}

#[test]
fn an_f16_folder_gives_the_same_greedy_tokens() {
    assert_short_greedy_matches(&folders().f16, DType::F16);
}

#[test]
fn a_bf16_folder_gives_the_same_greedy_tokens() {
    assert_short_greedy_matches(&folders().bf16, DType::BF16);
}

#[test]
fn the_folder_tokenizes_and_renders_chats_as_transformers() {
    let dir = &folders().f32;
    let (tokenizer, special) = tokenizer::from_folder(dir).unwrap();
    assert_eq!(special, SpecialTokens::from_gguf(&gguf()).unwrap());
    let reference = reference();
    for case in &reference.tokenization {
        let encoding = tokenizer.encode(case.text.as_str(), false).unwrap();
        assert_eq!(encoding.get_ids(), case.ids, "{:?}", case.text);
    }
    let template = ChatTemplate::from_folder(dir, &special).unwrap().unwrap();
    for case in &reference.chat {
        let rendered = template
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(rendered, case.rendered);
    }
}

#[tokio::test]
async fn the_server_serves_the_folder_as_a_generation_model() {
    let dir = tokio::task::spawn_blocking(|| folders().bf16.clone())
        .await
        .unwrap();
    let server = TestServer::start_generation(dir, |_| {}).await;
    let request = json!({
        "model": LLM_NAME,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 8,
    });
    let (status, body) = server.post("/v1/chat/completions", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty(), "{body}");
    server.stop().await.unwrap();
}
