//! Whether the files still to download fit on the destination's filesystem, decided before
//! the first byte arrives so a full volume fails fast with a clear message.

use std::path::Path;

use anyhow::Context as _;

use super::progress::human_bytes;

/// Refuses to start when `needed` bytes exceed the `free` bytes of `dir`'s filesystem.
pub fn check_space(needed: u64, free: u64, dir: &Path) -> Result<(), String> {
    if needed <= free {
        return Ok(());
    }
    Err(format!(
        "disk full: needs {}, {} free in {}",
        human_bytes(needed),
        human_bytes(free),
        dir.display()
    ))
}

/// Bytes an unprivileged process can still write on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("reading the free space of {}", dir.display()))?;
    Ok((stats.blocks_available() as u64).saturating_mul(stats.fragment_size() as u64))
}

/// [`check_space`] with the filesystem's numbers.
pub fn ensure_space(dir: &Path, needed: u64) -> anyhow::Result<()> {
    check_space(needed, free_bytes(dir)?, dir).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn what_fits_passes() {
        assert_eq!(check_space(GIB, GIB, Path::new("/models")), Ok(()));
        assert_eq!(check_space(0, 0, Path::new("/models")), Ok(()));
    }

    #[test]
    fn what_does_not_fit_says_how_much_is_needed_and_free() {
        let needed = GIB * 13 / 10 + 1;
        let free = GIB * 4 / 10 + 1;
        assert_eq!(
            check_space(needed, free, Path::new("/models")),
            Err("disk full: needs 1.3 GiB, 409.6 MiB free in /models".to_string())
        );
    }

    #[test]
    fn the_free_space_of_a_real_folder_is_known() {
        assert!(free_bytes(Path::new(".")).is_ok());
    }
}
