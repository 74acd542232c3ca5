//! Device, dtype and CPU thread selection.
//!
//! Turns `--device`/`--dtype`/`--threads` into a candle [`Device`] and [`DType`], checks that the
//! pair works, and sizes the CPU thread pool from the container's CPU limit (cgroup v2 or v1).

use std::path::Path;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};

use crate::config::{DTypeChoice, DeviceChoice};

/// Opens the chosen device. `auto` is CUDA device 0 in a binary built with `cuda`, and it fails
/// when that device cannot be opened: a GPU pod must not quietly serve at CPU speed. Only
/// `--device cpu` (or a binary built without CUDA) serves on the CPU.
pub fn select_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    resolve_device(
        choice,
        candle_core::utils::cuda_is_available(),
        Device::new_cuda,
    )
}

fn resolve_device(
    choice: DeviceChoice,
    cuda_built: bool,
    open_cuda: impl Fn(usize) -> candle_core::Result<Device>,
) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if !cuda_built => Ok(Device::Cpu),
        DeviceChoice::Auto => open_cuda(0).context(
            "--device auto: this binary is built with CUDA but CUDA device 0 cannot be opened \
             (no GPU visible, or a driver problem); pass --device cpu to serve on the CPU",
        ),
        DeviceChoice::Cuda(ordinal) => {
            if !cuda_built {
                bail!("--device cuda:{ordinal} asked for, but this binary was built without the `cuda` feature");
            }
            open_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
        }
    }
}

pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".to_owned(),
        },
        Device::Metal(_) => "metal".to_owned(),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    dtype.as_str()
}

/// Resolves `auto` and checks the model's operations run in that dtype on that device, so an
/// unsupported pair fails at startup with a clear message rather than on the first request.
pub fn select_dtype(choice: DTypeChoice, device: &Device) -> anyhow::Result<DType> {
    let dtype = match choice {
        DTypeChoice::Auto if device.is_cpu() => DType::F32,
        DTypeChoice::Auto => DType::F16,
        DTypeChoice::F32 => DType::F32,
        DTypeChoice::F16 => DType::F16,
        DTypeChoice::Bf16 => DType::BF16,
    };
    probe(dtype, device).with_context(|| {
        format!(
            "dtype {} is not supported on device {}",
            dtype.as_str(),
            device_name(device)
        )
    })?;
    Ok(dtype)
}

fn probe(dtype: DType, device: &Device) -> candle_core::Result<()> {
    let x = Tensor::ones((2, 4), dtype, device)?;
    let w = Tensor::ones((3, 4), dtype, device)?;
    let y = x.matmul(&w.t()?)?;
    let y = candle_nn::ops::softmax_last_dim(&y)?;
    let gamma = Tensor::ones(3, dtype, device)?;
    let beta = Tensor::zeros(3, dtype, device)?;
    let y = candle_nn::ops::layer_norm(&y, &gamma, &beta, 1e-12)?.gelu_erf()?;
    y.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(())
}

/// CPU threads to use: `--threads`, else the cgroup CPU limit (rounded up), capped by the cores
/// the process may run on.
pub fn cpu_threads(requested: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    requested.unwrap_or_else(|| {
        cgroup_cpu_limit(Path::new("/sys/fs/cgroup"))
            .map_or(cores, |limit| limit.min(cores))
            .max(1)
    })
}

/// Sizes the global rayon pool (used by candle's matmuls) and tells candle the same number.
/// Must run before any tensor work and before other threads start.
pub fn configure_cpu_threads(threads: usize) {
    // candle reads RAYON_NUM_THREADS for its gemm parallelism; keep both in agreement.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // candle's elementwise pool spins 25k times before parking; on a few cores those spinning
    // workers steal time from the matmul threads (measured: about 20% slower at 2 cores).
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    if let Err(err) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        tracing::warn!(%err, "the CPU thread pool was already configured");
    }
}

fn cgroup_cpu_limit(root: &Path) -> Option<usize> {
    if let Ok(v2) = std::fs::read_to_string(root.join("cpu.max")) {
        return parse_cpu_max(&v2);
    }
    let quota = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us")).ok()?;
    cpus_from_quota(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

/// cgroup v2 `cpu.max`: `"<quota> <period>"` or `"max <period>"`.
fn parse_cpu_max(content: &str) -> Option<usize> {
    let mut fields = content.split_whitespace();
    let quota = fields.next()?;
    let period = fields
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(100_000);
    cpus_from_quota(quota.parse().ok()?, period)
}

fn cpus_from_quota(quota: i64, period: i64) -> Option<usize> {
    if quota <= 0 || period <= 0 {
        return None;
    }
    usize::try_from((quota + period - 1) / period).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v2_limits_round_up() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn cgroup_v1_unlimited_is_none() {
        assert_eq!(cpus_from_quota(-1, 100_000), None);
        assert_eq!(cpus_from_quota(400_000, 100_000), Some(4));
    }

    #[test]
    fn cgroup_files_are_read() {
        let dir = std::env::temp_dir().join(format!("kandle-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("cpu")).unwrap();
        std::fs::write(dir.join("cpu/cpu.cfs_quota_us"), "300000\n").unwrap();
        std::fs::write(dir.join("cpu/cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(cgroup_cpu_limit(&dir), Some(3));
        std::fs::write(dir.join("cpu.max"), "100000 100000\n").unwrap();
        assert_eq!(cgroup_cpu_limit(&dir), Some(1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn no_gpu(_: usize) -> candle_core::Result<Device> {
        Err(candle_core::Error::Msg("CUDA_ERROR_NO_DEVICE".to_owned()))
    }

    #[test]
    fn auto_never_falls_back_to_the_cpu_when_cuda_fails() {
        let err = resolve_device(DeviceChoice::Auto, true, no_gpu).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("--device cpu") && message.contains("CUDA_ERROR_NO_DEVICE"),
            "{message}"
        );
        assert!(resolve_device(DeviceChoice::Cpu, true, no_gpu)
            .unwrap()
            .is_cpu());
        assert!(resolve_device(DeviceChoice::Auto, false, no_gpu)
            .unwrap()
            .is_cpu());
        assert!(resolve_device(DeviceChoice::Cuda(1), false, no_gpu).is_err());
        assert!(resolve_device(DeviceChoice::Cuda(0), true, no_gpu).is_err());
    }

    #[test]
    fn f32_works_on_cpu() {
        assert_eq!(
            select_dtype(DTypeChoice::Auto, &Device::Cpu).unwrap(),
            DType::F32
        );
    }
}
