//! kandle's Llama against Hugging Face transformers on SmolLM2-135M-Instruct, from the reference
//! in tests/data/smollm2 (made by scripts/generation_reference.py from the same GGUF file,
//! dequantized to f32 by transformers).
//!
//! - Weights dequantized to f32: logits match (cosine >= 0.9999 at every recorded position),
//!   teacher-forced argmax matches at every position where the reference's top two logits are
//!   not a near-tie, and greedy continuations are identical for 32 tokens.
//! - Quantized weights (the CPU default, multiplied with activations rounded to 16 bits per
//!   block): teacher-forced top-1 agrees with transformers on at least 98% of positions
//!   (llama.cpp: 0.947 with the same file), and greedy continuations, decoded through the row
//!   kernels, equal transformers'.
//! - A sequence's greedy tokens do not change when other sequences run in the same steps, and
//!   a prompt's logits do not change, to the bit, with how it is split into chunks.

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use common::generation::{
    assert_matches_reference, greedy, reference, reference_logits, teacher_forced, Prompt,
};
use kandle_runtime::generate::llama::{Chunk, Llama, WeightFormat};
use kandle_runtime::generate::sampling::argmax;

fn load(format: WeightFormat) -> Llama {
    let path = common::llm_file();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    Llama::from_gguf(&content, &mut file, &Device::Cpu, format).unwrap()
}

#[test]
fn f32_weights_match_transformers_logits_and_greedy_text() {
    let reference = reference();
    let expected = reference_logits(&reference);
    let model = load(WeightFormat::Dequantized(DType::F32));
    let mut worst = 1.0f64;
    for prompt in &reference.prompts {
        worst = worst.min(assert_matches_reference(&model, prompt, &expected));
        let tokens = greedy(&model, &prompt.ids, prompt.greedy.len());
        assert_eq!(
            tokens, prompt.greedy,
            "{}: greedy continuation",
            prompt.name
        );
    }
    eprintln!("worst logits cosine against transformers: {worst:.6}");
}

#[test]
fn quantized_weights_agree_on_the_top_token_and_greedy_text() {
    let reference = reference();
    let model = load(WeightFormat::Quantized);
    let (mut agree, mut total) = (0, 0);
    for prompt in &reference.prompts {
        let logits = teacher_forced(&model, &prompt.ids);
        for (row, want) in logits.iter().zip(&prompt.argmax) {
            total += 1;
            agree += usize::from(argmax(row) == *want);
        }
    }
    let share = agree as f64 / total as f64;
    eprintln!("quantized top-1 agreement with transformers (f32): {agree}/{total} = {share:.4}");
    // llama.cpp (llama-cpp-python 0.3.36) agrees on 721/761 = 0.947 of these positions with
    // the same file.
    assert!(share >= 0.98, "top-1 agreement {share:.4} < 0.98");
    for prompt in &reference.prompts {
        let tokens = greedy(&model, &prompt.ids, prompt.greedy.len());
        assert_eq!(
            tokens, prompt.greedy,
            "{}: quantized greedy continuation",
            prompt.name
        );
    }
}

#[test]
fn a_sequence_decodes_the_same_alone_and_batched_with_others() {
    let reference = reference();
    let model = load(WeightFormat::Quantized);
    let steps = 12;
    let alone: Vec<Vec<u32>> = reference
        .prompts
        .iter()
        .map(|p| greedy(&model, &p.ids, steps))
        .collect();
    // Every prompt twice: a step of more than eight sequences, whose products take the widest
    // kernels, as well as one of a single sequence.
    let prompts: Vec<&Prompt> = reference
        .prompts
        .iter()
        .cycle()
        .take(2 * alone.len())
        .collect();

    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut next: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let mut batched: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    for _ in 0..steps {
        let mut chunks: Vec<Chunk<'_>> = next
            .iter()
            .zip(caches.iter_mut())
            .map(|(tokens, cache)| Chunk {
                tokens,
                cache,
                all_logits: false,
            })
            .collect();
        let logits: Vec<Tensor> = model.forward(&mut chunks).unwrap();
        drop(chunks);
        for (i, row) in logits.iter().enumerate() {
            let token = argmax(&row.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            batched[i].push(token);
            next[i] = vec![token];
        }
    }
    let expected: Vec<Vec<u32>> = alone.iter().cycle().take(prompts.len()).cloned().collect();
    assert_eq!(batched, expected);
}

#[test]
fn a_prompt_gets_the_same_logits_in_one_chunk_in_several_or_beside_others() {
    let reference = reference();
    let model = load(WeightFormat::Quantized);
    let prompt = &reference
        .prompts
        .iter()
        .max_by_key(|p| p.ids.len())
        .expect("prompts")
        .ids;
    let other = &reference.prompts[0].ids;
    let last = |chunks: &mut [Chunk<'_>]| -> Vec<f32> {
        let logits = model.forward(chunks).unwrap();
        logits[0].flatten_all().unwrap().to_vec1().unwrap()
    };
    let mut cache = model.new_cache();
    let alone = last(&mut [Chunk {
        tokens: prompt,
        cache: &mut cache,
        all_logits: false,
    }]);
    // Split at several points, the first part beside another sequence's prompt, the rest
    // alone: different products and attention shapes, the same values to the bit.
    for split in [1, 7, 33, prompt.len() / 2, prompt.len() - 1] {
        let (mut cache, mut other_cache) = (model.new_cache(), model.new_cache());
        model
            .forward(&mut [
                Chunk {
                    tokens: other,
                    cache: &mut other_cache,
                    all_logits: false,
                },
                Chunk {
                    tokens: &prompt[..split],
                    cache: &mut cache,
                    all_logits: false,
                },
            ])
            .unwrap();
        let chunked = last(&mut [Chunk {
            tokens: &prompt[split..],
            cache: &mut cache,
            all_logits: false,
        }]);
        assert!(chunked == alone, "split at {split}: the logits differ");
    }
}
