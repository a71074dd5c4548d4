//! Generates Rust code from `proto/auditstream/v1/*.proto`. protoc comes from
//! `protoc-bin-vendored` so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through the PROTOC variable.
    unsafe_env_set("PROTOC", protoc);
    // Read at run time, not with `env!`: worktrees that share one target directory share this
    // compiled build script, and a path baked in at compile time would make every worktree
    // generate code from the .proto files of whichever worktree compiled it first.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files =
        ["auditstream/v1/ingest.proto", "auditstream/v1/config.proto"].map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    // The descriptor set feeds gRPC reflection, so grpcurl and friends work without .proto files.
    let descriptor =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("auditstream_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(&files, &[root])?;
    // Proto3 JSON mapping (enum names as strings, snake_case field names as in the .proto)
    // for `auditctl --json` and JSON input files.
    let set = std::fs::read(&descriptor)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .preserve_proto_field_names()
        .build(&[".auditstream"])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_env_set(key: &str, value: std::path::PathBuf) {
    // `set_var` is unsafe since edition 2024 because other threads may read the environment;
    // a build script has no other threads.
    unsafe { std::env::set_var(key, value) };
}
