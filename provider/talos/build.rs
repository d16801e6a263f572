//! Compiles waddle's minimal Talos API protos in `<repo>/proto/talos` with `protox` (pure
//! Rust, no system `protoc`) and generates tonic client and server code (the server side is
//! used by the Talos emulator in the acceptance tests).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto/talos");
    let files = [
        "machine/machine.proto",
        "machine/upgrade.proto",
        "machine/image.proto",
        "machine/lifecycle.proto",
        "machine/etcd_recovery.proto",
        "common/common.proto",
        "google/rpc/status.proto",
        "cosi/resource/state.proto",
        "resource/definitions/enums/enums.proto",
        "resource/definitions/runtime/runtime.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(f).display());
    }
    let fds = protox::compile(
        [
            "machine/machine.proto",
            "machine/image.proto",
            "machine/lifecycle.proto",
            "cosi/resource/state.proto",
            "resource/definitions/runtime/runtime.proto",
        ],
        [&proto_dir],
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
