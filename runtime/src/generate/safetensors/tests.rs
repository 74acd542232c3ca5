use serde_json::json;

use super::*;
use crate::generate::llama::Chunk;

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// A fresh folder; tests run in parallel, so each gets its own even for the same `name`.
    fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "kandle-safetensors-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A two-layer model 8 wide, with grouped-query attention and an untied head.
fn tiny_config() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 64,
        "vocab_size": 32,
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
        "rope_scaling": null,
        "attention_bias": false,
        "hidden_act": "silu"
    })
}

fn write_config(dir: &Path, config: &serde_json::Value) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// Random tensors of every name and shape `config` asks for.
fn random_tensors(config: &serde_json::Value) -> HashMap<String, Tensor> {
    let dir = TempDir::new("shapes");
    write_config(&dir.0, config);
    std::fs::write(dir.0.join("model.safetensors"), b"").unwrap();
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    checkpoint
        .expected()
        .into_iter()
        .map(|(name, shape)| {
            let tensor = Tensor::randn(0f32, 0.5, shape, &Device::Cpu).unwrap();
            (name, tensor)
        })
        .collect()
}

/// A folder with `config` and `tensors` in one `model.safetensors`.
fn folder(name: &str, config: &serde_json::Value, tensors: &HashMap<String, Tensor>) -> TempDir {
    let dir = TempDir::new(name);
    write_config(&dir.0, config);
    candle_core::safetensors::save(tensors, dir.0.join("model.safetensors")).unwrap();
    dir
}

fn logits(model: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache();
    let out = model
        .forward(&mut [Chunk {
            tokens,
            cache: &mut cache,
            all_logits: true,
        }])
        .unwrap();
    out[0].to_vec2().unwrap()
}

fn load_error(config: serde_json::Value) -> String {
    let dir = TempDir::new("refused");
    write_config(&dir.0, &config);
    std::fs::write(dir.0.join("model.safetensors"), b"").unwrap();
    format!("{:#}", Checkpoint::open(&dir.0).unwrap_err())
}

#[test]
fn sharded_and_single_files_give_the_same_logits() {
    let config = tiny_config();
    let tensors = random_tensors(&config);
    let single = folder("single", &config, &tensors);

    let sharded = TempDir::new("sharded");
    write_config(&sharded.0, &config);
    let (first, second): (HashMap<_, _>, HashMap<_, _>) = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .partition(|(n, _)| n.contains("layers.0") || n == EMBEDDINGS);
    let mut map = serde_json::Map::new();
    for (file, part) in [("a.safetensors", &first), ("b.safetensors", &second)] {
        candle_core::safetensors::save(part, sharded.0.join(file)).unwrap();
        map.extend(part.keys().map(|n| (n.clone(), json!(file))));
    }
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.0.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let format = WeightFormat::Dequantized(DType::F32);
    let a = Checkpoint::open(&single.0).unwrap();
    let b = Checkpoint::open(&sharded.0).unwrap();
    assert_eq!(b.files.len(), 2);
    let tokens = [1, 5, 9, 30, 2];
    let want = logits(&a.load(&Device::Cpu, format).unwrap(), &tokens);
    assert_eq!(
        logits(&b.load(&Device::Cpu, format).unwrap(), &tokens),
        want
    );
    assert_eq!(want.len(), tokens.len());
    assert_eq!(want[0].len(), 32);
}

#[test]
fn the_f32_size_counts_every_weight() {
    let config = tiny_config();
    let tensors = random_tensors(&config);
    let dir = folder("size", &config, &tensors);
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    let elements: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(checkpoint.f32_bytes(), elements as u64 * 4);
}

/// The whole error chain of loading a folder that fails to load.
fn weights_error(dir: &TempDir, format: WeightFormat) -> String {
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    format!("{:#}", checkpoint.load(&Device::Cpu, format).err().unwrap())
}

#[test]
fn missing_and_misshapen_tensors_name_the_tensor_and_file() {
    let config = tiny_config();
    let mut tensors = random_tensors(&config);
    tensors.remove("model.layers.1.mlp.up_proj.weight");
    let dir = folder("missing", &config, &tensors);
    let format = WeightFormat::Dequantized(DType::F32);
    let err = weights_error(&dir, format);
    assert!(err.contains("`model.layers.1.mlp.up_proj.weight`"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");

    let name = "model.layers.0.self_attn.k_proj.weight";
    tensors.insert(
        name.to_owned(),
        Tensor::zeros((8, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = folder("misshapen", &config, &tensors);
    let err = weights_error(&dir, format);
    assert!(
        err.contains(&format!("model.safetensors: tensor `{name}`")),
        "{err}"
    );
    assert!(
        err.contains("shape [8, 8], but config.json makes it [4, 8]"),
        "{err}"
    );
}

#[test]
fn unsupported_configs_are_refused_naming_the_field() {
    let with = |key: &str, value: serde_json::Value| {
        let mut config = tiny_config();
        config[key] = value;
        load_error(config)
    };
    let err = with(
        "rope_scaling",
        json!({"rope_type": "llama3", "factor": 8.0}),
    );
    assert!(
        err.contains("`rope_scaling`") && err.contains("llama3"),
        "{err}"
    );
    let err = with("attention_bias", json!(true));
    assert!(
        err.contains("`attention_bias: true` is not supported"),
        "{err}"
    );
    let err = with("mlp_bias", json!(true));
    assert!(err.contains("`mlp_bias: true`"), "{err}");
    let err = with("hidden_act", json!("gelu"));
    assert!(err.contains("`hidden_act` \"gelu\""), "{err}");
    let err = with("head_dim", json!(8));
    assert!(err.contains("`head_dim` 8"), "{err}");
    let err = with("torch_dtype", json!("float8_e4m3fn"));
    assert!(err.contains("float8_e4m3fn"), "{err}");
    let err = with("quantization_config", json!({"quant_method": "gptq"}));
    assert!(err.contains("`quantization_config`"), "{err}");
    let err = with("architectures", json!(["Qwen2ForCausalLM"]));
    assert!(
        err.contains("unsupported architecture Qwen2ForCausalLM")
            && err.contains("LlamaForCausalLM, MistralForCausalLM"),
        "{err}"
    );
    assert!(err.contains("config.json is not served"), "{err}");
    let err = load_error(json!({"architectures": ["GPT2LMHeadModel"], "n_embd": 768}));
    assert!(
        err.contains("unsupported architecture GPT2LMHeadModel"),
        "{err}"
    );
}

#[test]
fn mistral_and_model_type_only_configs_are_read() {
    let dir = TempDir::new("mistral");
    let mut config = tiny_config();
    config["architectures"] = json!(["MistralForCausalLM"]);
    config["model_type"] = json!("mistral");
    config["sliding_window"] = json!(16);
    config["head_dim"] = json!(4);
    write_config(&dir.0, &config);
    std::fs::write(dir.0.join("model.safetensors"), b"").unwrap();
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    assert_eq!(checkpoint.config.architecture, "mistral");
    assert_eq!(checkpoint.config.context_length, 16, "capped to the window");
    assert!(!checkpoint.config.rope_interleaved);

    config["sliding_window"] = json!(null);
    config.as_object_mut().unwrap().remove("architectures");
    config["model_type"] = json!("llama");
    write_config(&dir.0, &config);
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    assert_eq!(checkpoint.config.architecture, "llama");
    assert_eq!(checkpoint.config.context_length, 64);
    assert_eq!(checkpoint.config.kv_heads, 1);
}

#[test]
fn weights_are_held_in_the_type_asked_or_as_stored() {
    let dir = TempDir::new("dtype");
    let mut config = tiny_config();
    config["torch_dtype"] = json!("bfloat16");
    write_config(&dir.0, &config);
    std::fs::write(dir.0.join("model.safetensors"), b"").unwrap();
    let checkpoint = Checkpoint::open(&dir.0).unwrap();
    assert_eq!(checkpoint.stored_dtype, DType::BF16);
    let held = |format| checkpoint.weight_dtype(format).map_err(|e| e.to_string());
    assert_eq!(held(WeightFormat::Quantized), Ok(DType::F16));
    assert_eq!(held(WeightFormat::Dequantized(DType::F32)), Ok(DType::F32));
    assert_eq!(held(WeightFormat::Dequantized(DType::F16)), Ok(DType::F16));
    let err = held(WeightFormat::Dequantized(DType::BF16)).unwrap_err();
    assert!(err.contains("bf16 weights are not supported"), "{err}");
}

#[test]
fn a_causal_lm_folder_is_recognized_by_its_architecture() {
    let dir = TempDir::new("causal");
    assert!(!is_causal_lm(&dir.0));
    write_config(&dir.0, &json!({"architectures": ["BertModel"]}));
    assert!(!is_causal_lm(&dir.0));
    write_config(&dir.0, &json!({"architectures": ["Qwen2ForCausalLM"]}));
    assert!(is_causal_lm(&dir.0));
}
