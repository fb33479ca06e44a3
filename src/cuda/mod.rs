//! The CUDA backend (DESIGN §1, layer 2 on the GPU): the simulation step's kernels, written in
//! CUDA C (`kernels/`), compiled at run time by NVRTC and launched through the driver API
//! (cudarc, loaded at run time: nothing CUDA is needed to build drivekit or to run it on CPUs).
//!
//! The same kernel source also compiles as plain C++ for the *kernel emulator* (the
//! `cuda-emulated` backend): the host's C++ compiler builds it into a shared library whose entry
//! point loops over the threads one after another. Tests run it against the Rust CPU backend on
//! every CI run, so the kernels' logic is checked where there is no GPU.

pub mod bench;
pub mod check;
pub mod device;
pub mod nvrtc;
pub mod raster;
pub mod source;
pub mod stepper;
pub mod tables;

use device::{CudaError, Device};

/// Which backend steps the simulation (a command-line value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// CUDA when a usable GPU (driver, device and NVRTC) is found and passes a start-up
    /// self-check against the CPU backend, else the CPU; the choice and why are printed, logged
    /// and written to run_metadata.yaml.
    #[default]
    Auto,
    /// The Rust CPU backend, on every core.
    Cpu,
    /// The CUDA kernels on GPU 0 (an error when there is none).
    Cuda,
    /// The CUDA kernels compiled as C++ and run on one CPU core (needs a C++ compiler): for
    /// checking the kernels where there is no GPU.
    CudaEmulated,
}

/// Where the kernels run, for the commands that only check or measure them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelBackend {
    /// The CUDA kernels on GPU 0.
    Cuda,
    /// The CUDA kernels compiled as C++, on one core.
    CudaEmulated,
}

impl From<KernelBackend> for Backend {
    fn from(b: KernelBackend) -> Backend {
        match b {
            KernelBackend::Cuda => Backend::Cuda,
            KernelBackend::CudaEmulated => Backend::CudaEmulated,
        }
    }
}

/// The backend a run uses, after probing.
pub enum Chosen {
    /// The CPU backend; with `auto`, why CUDA was not used.
    Cpu(Option<String>),
    /// A device running the kernels; with `auto`, what its start-up self-check found.
    Kernels(Device, Option<String>),
}

impl Chosen {
    /// Name written to run_metadata.yaml: `cpu`, `cuda` or `cuda-emulated`.
    pub fn name(&self) -> &'static str {
        match self {
            Chosen::Cpu(_) => "cpu",
            Chosen::Kernels(d, _) if d.is_gpu() => "cuda",
            Chosen::Kernels(..) => "cuda-emulated",
        }
    }

    /// One line for logs: the backend and the device (or why CUDA is not used).
    pub fn describe(&self) -> String {
        match self {
            Chosen::Cpu(None) => format!("backend cpu ({} threads)", rayon::current_num_threads()),
            Chosen::Cpu(Some(why)) => format!(
                "backend cpu ({} threads; CUDA not used: {why})",
                rayon::current_num_threads()
            ),
            Chosen::Kernels(d, None) => format!("backend {}: {}", self.name(), d.description),
            Chosen::Kernels(d, Some(check)) => {
                format!("backend {}: {} ({check})", self.name(), d.description)
            }
        }
    }

    /// The device, when the kernels run.
    pub fn device(&self) -> Option<&Device> {
        match self {
            Chosen::Kernels(d, _) => Some(d),
            Chosen::Cpu(_) => None,
        }
    }
}

impl Backend {
    /// Probes and picks: `auto` takes a GPU only once its start-up self-check
    /// ([`check::self_check`]: one rollout on the device and on the CPU, compared) passes, and
    /// otherwise falls back to the CPU saying why; `cuda` and `cuda-emulated` fail when they
    /// cannot run.
    pub fn choose(self) -> Result<Chosen, CudaError> {
        match self {
            Backend::Cpu => Ok(Chosen::Cpu(None)),
            Backend::Cuda => Device::cuda().map(|d| Chosen::Kernels(d, None)),
            Backend::CudaEmulated => Device::emulated().map(|d| Chosen::Kernels(d, None)),
            Backend::Auto => Ok(match Device::cuda() {
                Ok(d) => match check::self_check(&d) {
                    Ok(passed) => Chosen::Kernels(d, Some(passed)),
                    Err(why) => Chosen::Cpu(Some(format!(
                        "{} failed its start-up self-check against the CPU backend: {why}",
                        d.description
                    ))),
                },
                Err(e) => Chosen::Cpu(Some(e.to_string())),
            }),
        }
    }
}
