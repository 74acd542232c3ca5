//! A matmul weight of the decoder, `[out, in]`, applied to activations `[tokens, in]`.
//!
//! On the CPU, GGUF block weights (Q4_0, Q4_1, Q8_0) go through the integer
//! [`row_kernels`](super::row_kernels) at every batch size; f32 weights through the row kernels
//! for up to [`ROW_KERNEL_MAX_TOKENS`] tokens (decode steps) and through candle's gemm for
//! larger prompt chunks. GGUF block types without a row kernel (the K-quants), f16 weights and
//! every weight on a GPU use candle's `QMatMul`.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Storage, Tensor};
use rayon::prelude::*;

use super::llama::WeightFormat;
use super::row_kernels::{BlockMatrix, RowsTimes, Tokens, WeightRows, GROUP_ROWS};

/// The most tokens a step may have for the f32 row kernels; above it candle's gemm, which
/// reuses each weight many times from cache. At 32 tokens the row kernels are still the faster
/// (a SmolLM2 decode step of 32 sequences on f32 rows: 92 ms, against 120 ms through gemm).
pub const ROW_KERNEL_MAX_TOKENS: usize = 32;

/// Weight rows handled by one parallel task of the row kernels: whole groups of block rows,
/// since the block kernels start each task at a group's first row.
const ROWS_PER_TASK: usize = 48;
const _: () = assert!(ROWS_PER_TASK.is_multiple_of(GROUP_ROWS));

pub enum Linear {
    /// On the CPU, `[out, in]` f32, contiguous.
    F32(Tensor),
    /// On the CPU, GGUF blocks.
    Blocks(BlockMatrix),
    /// Everything else, through candle.
    Candle(QMatMul),
}

impl Linear {
    /// From a GGUF tensor, held as `format` says.
    pub fn from_qtensor(tensor: QTensor, format: WeightFormat) -> anyhow::Result<Self> {
        let device = tensor.device();
        Ok(match format {
            WeightFormat::Quantized if device.is_cpu() && BlockMatrix::supports(tensor.dtype()) => {
                let (rows, cols) = tensor.shape().dims2()?;
                Self::Blocks(BlockMatrix::from_gguf(
                    tensor.dtype(),
                    rows,
                    cols,
                    &tensor.data()?,
                )?)
            }
            WeightFormat::Quantized => Self::Candle(QMatMul::from_qtensor(tensor)?),
            WeightFormat::Dequantized(DType::F16) => {
                Self::Candle(QMatMul::TensorF16(tensor.dequantize_f16(&device)?))
            }
            WeightFormat::Dequantized(dtype) => {
                Self::from_tensor(tensor.dequantize(&device)?.to_dtype(dtype)?)?
            }
        })
    }

    /// From a float tensor `[out, in]`.
    pub fn from_tensor(weight: Tensor) -> anyhow::Result<Self> {
        Ok(match weight.dtype() {
            DType::F32 if weight.device().is_cpu() => Self::F32(weight.contiguous()?),
            DType::F16 => Self::Candle(QMatMul::TensorF16(weight)),
            _ => Self::Candle(QMatMul::Tensor(weight)),
        })
    }

    /// `x · Wᵀ`: `[tokens, in] -> [tokens, out]`.
    pub fn forward(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        let mut out = Self::forward_all(&[self], x)?;
        Ok(out.pop().expect("one output per weight"))
    }

    /// `x · Wᵀ` for each of `weights` (which share their input). Where all go through the row
    /// kernels, they run as one parallel pass: one fork and join instead of one per weight,
    /// which at one token per step cost about as much as the multiplications.
    pub fn forward_all(weights: &[&Self], x: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let tokens = x.dim(0)?;
        let rowwise = |weight: &&Self| match weight {
            Self::Blocks(_) => true,
            Self::F32(_) => tokens <= ROW_KERNEL_MAX_TOKENS,
            Self::Candle(_) => false,
        };
        if !weights.iter().all(rowwise) {
            return weights.iter().map(|weight| weight.forward_one(x)).collect();
        }
        let guards: Vec<_> = weights
            .iter()
            .map(|weight| match weight {
                Self::F32(tensor) => Some(tensor.storage_and_layout()),
                _ => None,
            })
            .collect();
        let rows = weights
            .iter()
            .zip(&guards)
            .map(|(weight, guard)| match (weight, guard) {
                (Self::F32(tensor), Some((storage, layout))) => {
                    let (out, cols) = tensor.dims2()?;
                    let data = &cpu_slice(storage)?[layout.start_offset()..][..out * cols];
                    Ok(WeightRows::F32 { data, cols })
                }
                (Self::Blocks(blocks), _) => Ok(WeightRows::Blocks(blocks)),
                _ => unreachable!("only row-kernel weights get here"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        row_kernel(x, &rows)
    }

    /// One weight, by whichever path its kind and the batch size call for.
    fn forward_one(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        Ok(match self {
            Self::Candle(matmul) => matmul.forward(x)?,
            Self::F32(weight) => x.matmul(&weight.t()?)?,
            Self::Blocks(blocks) => {
                let mut out = row_kernel(x, &[WeightRows::Blocks(blocks)])?;
                out.pop().expect("one output per weight")
            }
        })
    }
}

/// The rows of `x` against each of `weights`, in one parallel pass over all their rows.
fn row_kernel(x: &Tensor, weights: &[WeightRows<'_>]) -> anyhow::Result<Vec<Tensor>> {
    let tokens = x.dim(0)?;
    with_cpu_values(&x.to_dtype(DType::F32)?, |x_data| {
        let x_tokens = Tokens::new(x_data, tokens, weights);
        // Per weight, the products `[tokens, out]`. Each task takes its rows' columns of every
        // token's row.
        let mut results: Vec<Vec<f32>> = weights
            .iter()
            .map(|weight| vec![0f32; tokens * weight.rows()])
            .collect();
        let mut tasks: Vec<(&WeightRows<'_>, usize, Vec<&mut [f32]>)> = Vec::new();
        for (weight, result) in weights.iter().zip(results.iter_mut()) {
            let first_task = tasks.len();
            for first in (0..weight.rows()).step_by(ROWS_PER_TASK) {
                tasks.push((weight, first, Vec::with_capacity(tokens)));
            }
            for token in result.chunks_mut(weight.rows()) {
                for (task, part) in tasks[first_task..]
                    .iter_mut()
                    .zip(token.chunks_mut(ROWS_PER_TASK))
                {
                    task.2.push(part);
                }
            }
        }
        tasks.into_par_iter().for_each(|(weight, first, out)| {
            let rows = first..first + out[0].len();
            RowsTimes {
                x: &x_tokens,
                weights: weight,
                rows,
                out,
            }
            .run();
        });
        results
            .into_iter()
            .zip(weights)
            .map(|(values, weight)| {
                Ok(Tensor::from_vec(
                    values,
                    (tokens, weight.rows()),
                    &Device::Cpu,
                )?)
            })
            .collect()
    })
}

/// Lends the values of an f32 CPU tensor, in row-major order (copied first if the tensor is
/// not contiguous), to `f`.
pub fn with_cpu_values<R>(
    tensor: &Tensor,
    f: impl FnOnce(&[f32]) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    f(&cpu_slice(&storage)?[layout.start_offset()..][..tensor.elem_count()])
}

/// The f32 values of a CPU tensor's storage.
fn cpu_slice(storage: &Storage) -> anyhow::Result<&[f32]> {
    match storage {
        Storage::Cpu(cpu) => Ok(cpu.as_slice::<f32>()?),
        _ => anyhow::bail!("a CPU kernel given a tensor that is not on the CPU"),
    }
}
