//! The repositories a [`super::HubServer`] serves, and the hashes the Hub lists for their files.

use std::path::Path;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// One model repository at one commit.
#[derive(Clone, Debug)]
pub struct HubRepo {
    /// `org/name`.
    pub id: String,
    /// The 40-hex commit every file belongs to.
    pub commit: String,
    /// Branch (or tag) name -> commit.
    pub branches: Vec<(String, String)>,
    pub files: Vec<HubFile>,
    /// Gated: requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// A file of a repository; LFS files are redirected to the fake CDN as on the real Hub.
#[derive(Clone, Debug)]
pub struct HubFile {
    /// Path in the repository, `/`-separated.
    pub path: String,
    pub content: Vec<u8>,
    pub lfs: bool,
}

impl HubFile {
    /// A file, stored in LFS when its extension is one the Hub keeps there.
    pub fn new(path: &str, content: Vec<u8>) -> Self {
        let lfs = [".safetensors", ".gguf", ".bin"]
            .iter()
            .any(|ext| path.ends_with(ext));
        Self {
            path: path.to_string(),
            content,
            lfs,
        }
    }

    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.content))
    }

    /// What the Hub lists as `blobId`: the Git blob id of the file, which for an LFS file is
    /// that of its pointer, not of its content.
    pub fn blob_id(&self) -> String {
        let stored = if self.lfs {
            self.pointer().into_bytes()
        } else {
            self.content.clone()
        };
        git_blob_sha1(&stored)
    }

    fn pointer(&self) -> String {
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
            self.sha256(),
            self.content.len()
        )
    }

    /// The entry of `/api/models/.../tree/...?recursive=true`, as `huggingface_hub` lists files.
    pub fn tree_entry(&self) -> serde_json::Value {
        let mut entry = serde_json::json!({
            "type": "file",
            "oid": self.blob_id(),
            "size": self.content.len(),
            "path": self.path,
        });
        if self.lfs {
            entry["lfs"] = serde_json::json!({
                "oid": self.sha256(),
                "size": self.content.len(),
                "pointerSize": self.pointer().len(),
            });
        }
        entry
    }

    /// The entry of `siblings` in `/api/models/.../revision/...?blobs=true`.
    pub fn sibling(&self) -> serde_json::Value {
        let mut sibling = serde_json::json!({
            "rfilename": self.path,
            "size": self.content.len(),
            "blobId": self.blob_id(),
        });
        if self.lfs {
            sibling["lfs"] = serde_json::json!({
                "sha256": self.sha256(),
                "size": self.content.len(),
                "pointerSize": self.pointer().len(),
            });
        }
        sibling
    }
}

/// `sha1("blob {len}\0" + content)`.
pub fn git_blob_sha1(content: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {}\0", content.len()));
    sha1.update(content);
    hex::encode(sha1.finalize())
}

impl HubRepo {
    /// Every file under `dir`, recursively; `*.safetensors`, `*.gguf` and `*.bin` are LFS.
    /// Panics when the folder cannot be read (test setup).
    pub fn from_dir(id: &str, commit: &str, dir: &Path) -> HubRepo {
        let mut files = Vec::new();
        collect(dir, dir, &mut files)
            .unwrap_or_else(|e| panic!("reading the repository folder {}: {e}", dir.display()));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        HubRepo {
            id: id.to_string(),
            commit: commit.to_string(),
            branches: Vec::new(),
            files,
            token: None,
        }
    }

    /// Adds a branch pointing at the repository's commit.
    pub fn with_branch(mut self, name: &str) -> Self {
        self.branches.push((name.to_string(), self.commit.clone()));
        self
    }

    /// Makes the repository gated behind `token`.
    pub fn gated(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// The commit a revision (the commit itself or a branch) names.
    pub fn resolve(&self, revision: &str) -> Option<&str> {
        if revision == self.commit {
            return Some(&self.commit);
        }
        self.branches
            .iter()
            .find(|(name, _)| name == revision)
            .map(|(_, commit)| commit.as_str())
    }

    pub fn file(&self, path: &str) -> Option<&HubFile> {
        self.files.iter().find(|file| file.path == path)
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<HubFile>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        let relative = path.strip_prefix(root).expect("walked from the root");
        let name: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        files.push(HubFile::new(&name.join("/"), std::fs::read(&path)?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_git_object_ids() {
        // `git hash-object` of a file holding "hello\n".
        let file = HubFile::new("a.txt", b"hello\n".to_vec());
        assert_eq!(file.blob_id(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert!(!file.lfs);
        assert!(HubFile::new("model.safetensors", Vec::new()).lfs);
    }
}
