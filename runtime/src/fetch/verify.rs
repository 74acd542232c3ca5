//! What a downloaded file must be (size and hash) and the hashing that checks it: sha256 for
//! Git LFS files and archives, Git's blob sha1 for the small files of a Hub repository.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Digest {
    Sha256(String),
    /// `sha1("blob {len}\0" + content)`, Git's object id, which the Hub calls `blobId`.
    GitBlob(String),
    None,
}

/// The size and hash a file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: Option<u64>,
    digest: Digest,
    /// Names the hash in a mismatch message.
    label: &'static str,
}

impl Expected {
    /// A Git LFS file: its content's sha256.
    pub fn lfs(sha256: &str, size: u64) -> Self {
        Self {
            size: Some(size),
            digest: Digest::Sha256(sha256.to_ascii_lowercase()),
            label: "sha256",
        }
    }

    /// A file stored in Git itself: its blob id.
    pub fn git_blob(sha1: &str, size: u64) -> Self {
        Self {
            size: Some(size),
            digest: Digest::GitBlob(sha1.to_ascii_lowercase()),
            label: "git blob sha1",
        }
    }

    /// A file of unknown size whose sha256 the user gave.
    pub fn checksum(sha256: &str) -> Self {
        Self {
            size: None,
            digest: Digest::Sha256(sha256.to_ascii_lowercase()),
            label: "checksum",
        }
    }

    /// Only the size is known.
    pub fn size(size: u64) -> Self {
        Self {
            size: Some(size),
            digest: Digest::None,
            label: "hash",
        }
    }

    pub fn hasher(&self) -> Hasher {
        match &self.digest {
            Digest::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Digest::GitBlob(_) => {
                let mut sha1 = Sha1::new();
                sha1.update(format!("blob {}\0", self.size.unwrap_or(0)));
                Hasher::Sha1(sha1)
            }
            Digest::None => Hasher::None,
        }
    }

    /// Compares what was written with what was expected.
    pub fn check(&self, size: u64, hasher: Hasher) -> Result<(), Mismatch> {
        if let Some(expected) = self.size.filter(|&expected| expected != size) {
            return Err(Mismatch {
                what: "size",
                expected: format!("{expected} bytes"),
                got: format!("{size} bytes"),
            });
        }
        let want = match &self.digest {
            Digest::Sha256(hex) | Digest::GitBlob(hex) => hex,
            Digest::None => return Ok(()),
        };
        let got = hasher.finish();
        if &got == want {
            Ok(())
        } else {
            Err(Mismatch {
                what: self.label,
                expected: want.clone(),
                got,
            })
        }
    }
}

/// The running hash of a download.
pub enum Hasher {
    Sha256(Sha256),
    Sha1(Sha1),
    None,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha1(hasher) => hasher.update(bytes),
            Self::None => {}
        }
    }

    fn finish(self) -> String {
        match self {
            Self::Sha256(hasher) => hex::encode(hasher.finalize()),
            Self::Sha1(hasher) => hex::encode(hasher.finalize()),
            Self::None => String::new(),
        }
    }
}

/// A file that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub what: &'static str,
    pub expected: String,
    pub got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mismatch: expected {}, got {} (corrupted in transit or changed on the server)",
            self.what, self.expected, self.got
        )
    }
}

/// Feeds a file into `hasher` (blocking); returns its length.
pub fn hash_file(path: &Path, hasher: &mut Hasher) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    let mut length = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(length);
        }
        hasher.update(&buffer[..read]);
        length += read as u64;
    }
}

/// Whether the file at `path` already is what `expected` says (blocking).
pub fn is_complete(path: &Path, expected: &Expected) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    if !metadata.is_file() || expected.size.is_some_and(|size| size != metadata.len()) {
        return false;
    }
    let mut hasher = expected.hasher();
    hash_file(path, &mut hasher).is_ok_and(|size| expected.check(size, hasher).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(expected: &Expected, content: &[u8]) -> Result<(), Mismatch> {
        let mut hasher = expected.hasher();
        hasher.update(content);
        expected.check(content.len() as u64, hasher)
    }

    #[test]
    fn the_git_blob_id_hashes_a_header_before_the_content() {
        // `git hash-object` of a file holding "hello\n".
        let expected = Expected::git_blob("ce013625030ba8dba906f756967f9e9ca394464a", 6);
        assert_eq!(hashed(&expected, b"hello\n"), Ok(()));
    }

    #[test]
    fn a_changed_byte_is_a_sha256_mismatch() {
        let expected = Expected::lfs(
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            6,
        );
        assert_eq!(hashed(&expected, b"hello\n"), Ok(()));
        let mismatch = hashed(&expected, b"hellp\n").unwrap_err();
        assert_eq!(mismatch.what, "sha256");
        assert!(mismatch.to_string().starts_with(
            "sha256 mismatch: expected 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03, got "
        ));
    }

    #[test]
    fn a_short_file_is_a_size_mismatch_before_any_hash() {
        let expected = Expected::lfs(
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            7,
        );
        let mismatch = hashed(&expected, b"hello\n").unwrap_err();
        assert_eq!(mismatch.what, "size");
    }

    #[test]
    fn an_archive_checksum_is_named_checksum() {
        let mismatch = hashed(&Expected::checksum(&"0".repeat(64)), b"x").unwrap_err();
        assert!(mismatch
            .to_string()
            .starts_with("checksum mismatch: expected 000"));
    }
}
