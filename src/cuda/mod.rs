//! The CUDA backend (DESIGN §1, layer 2 on the GPU): the simulation step's kernels, written in
//! CUDA C (`kernels/`), compiled at run time by NVRTC and launched through the driver API
//! (cudarc, loaded at run time: nothing CUDA is needed to build drivekit or to run it on CPUs).
//!
//! The same kernel source also compiles as plain C++ for the *kernel emulator* (the
//! `cuda-emulated` backend): the host's C++ compiler builds it into a shared library whose entry
//! point loops over the threads one after another. Tests run it against the Rust CPU backend on
//! every CI run, so the kernels' logic is checked where there is no GPU.

pub mod check;
pub mod device;
pub mod nvrtc;
pub mod source;
pub mod stepper;
pub mod tables;
