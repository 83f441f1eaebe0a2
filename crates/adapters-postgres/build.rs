//! Rebuilds the crate when a migration changes (`embed_migrations!` reads them at compile time)
//! and exports a fingerprint of the migration set, so tests clone a template built from exactly
//! these migrations and rebuild it when they change.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    paths.sort();
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in paths {
        let name = path.strip_prefix(&dir).unwrap_or(&path).to_string_lossy().into_owned();
        let body = fs::read(&path).unwrap_or_default();
        for byte in name.bytes().chain([0]).chain(body).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=CONCERT_MIGRATIONS_HASH={hash:016x}");
}
