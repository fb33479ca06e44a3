//! Compiles AlpaSim's gRPC contract (proto/alpasim_grpc/v0/*.proto) and Waymo's `Scenario`
//! (proto/waymo_open_dataset/protos/*.proto) into Rust with protox, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/alpasim_grpc/v0/egodriver.proto"];
    for p in [
        "proto/alpasim_grpc/v0/common.proto",
        "proto/alpasim_grpc/v0/sensorsim.proto",
        protos[0],
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    let waymo = [
        "proto/waymo_open_dataset/protos/scenario.proto",
        "proto/waymo_open_dataset/protos/map.proto",
    ];
    for p in waymo {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile([waymo[0]], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
