//! Compiles the vendored Kubernetes `.proto` files (see `proto/README.md`) into one descriptor
//! set, which `src/protobuf` reads protobuf request bodies with. protox is a protobuf compiler
//! in Rust, so building needs no `protoc`.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new("proto");
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let set = protox::compile(&files, [root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.bin");
    std::fs::write(out, set.encode_to_vec())?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

fn collect(
    root: &std::path::Path,
    dir: &std::path::Path,
    files: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(
                path.strip_prefix(root)
                    .map(|p| p.to_path_buf())
                    .unwrap_or(path),
            );
        }
    }
    Ok(())
}
