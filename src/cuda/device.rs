//! Where the kernels run: a CUDA GPU (cudarc's driver API, libcuda loaded at run time) or the
//! kernel emulator (the same source compiled as C++ by the host compiler and loaded as a shared
//! library). Both hand out device buffers by address, copy to and from them, and launch a kernel
//! over n threads with one [`DkArgs`] argument.

use std::path::PathBuf;
use std::sync::Arc;

use super::nvrtc::Nvrtc;
use super::source::{self, DkArgs, DkRasterArgs, DkScene, Kernel};

/// Why the CUDA backend cannot run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    /// No usable GPU, driver or NVRTC.
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// The kernels did not compile (NVRTC's or the C++ compiler's log).
    #[error("kernel compilation failed: {0}")]
    Compile(String),
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
}

fn drv(e: impl std::fmt::Display) -> CudaError {
    CudaError::Driver(e.to_string())
}

/// Plain data that may be copied to a device as bytes.
///
/// # Safety
/// Implementors have no padding-dependent invariants and no pointers into host memory.
pub unsafe trait Plain: Copy + Default {}
// SAFETY: primitive numbers and the #[repr(C)] kernel structs made of them.
unsafe impl Plain for u8 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for i32 {}
unsafe impl Plain for i64 {}
unsafe impl Plain for f64 {}
unsafe impl Plain for DkScene {}

fn as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: T is plain data; the slice covers exactly its elements.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn as_bytes_mut<T: Plain>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; every bit pattern written back comes from a value of T.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// A device buffer.
pub struct DevBuf {
    /// Its device address (what the kernels dereference).
    pub addr: u64,
    /// Size in bytes.
    pub bytes: usize,
    mem: Mem,
}

enum Mem {
    Cuda(cudarc::driver::CudaSlice<u8>),
    /// Emulator memory: a leaked boxed slice of u64 (8-byte aligned), freed on drop.
    Host(*mut [u64]),
}

// SAFETY: host memory of the emulator is owned by the buffer and only touched through it (or by
// kernels launched while the buffer lives, on the launching thread).
unsafe impl Send for DevBuf {}

impl Drop for DevBuf {
    fn drop(&mut self) {
        if let Mem::Host(p) = self.mem {
            // SAFETY: created by Box::into_raw in alloc and dropped once.
            unsafe { drop(Box::from_raw(p)) };
        }
    }
}

struct CudaDev {
    ctx: Arc<cudarc::driver::CudaContext>,
    stream: Arc<cudarc::driver::CudaStream>,
    functions: Vec<cudarc::driver::CudaFunction>,
    _module: Arc<cudarc::driver::CudaModule>,
}

struct EmuDev {
    _lib: libloading::Library,
    launch: unsafe extern "C" fn(i32, *const std::ffi::c_void, u32, i32) -> i32,
    /// Threads run from the last to the first.
    reverse: bool,
}

/// The emulated thread index is a global of the library, and every emulated device of a process
/// loads the same library (the dynamic loader hands out one copy per path): one launch at a time
/// in the whole process.
static EMULATOR_LAUNCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

// SAFETY: the kernel structs are plain data (device addresses and numbers), passed by value.
unsafe impl cudarc::driver::DeviceRepr for DkArgs {}
unsafe impl cudarc::driver::DeviceRepr for DkRasterArgs {}

/// A kernel's argument struct.
pub trait KernelArgs: cudarc::driver::DeviceRepr + Copy {}
impl KernelArgs for DkArgs {}
impl KernelArgs for DkRasterArgs {}

/// A GPU or the kernel emulator.
pub struct Device {
    kind: Kind,
    /// What it is, for logs and run_metadata.yaml.
    pub description: String,
}

enum Kind {
    Cuda(CudaDev),
    Emulated(EmuDev),
}

/// Threads per block on the GPU.
pub const BLOCK: u32 = 128;

/// True when the CUDA driver library can be loaded (cudarc panics on first use otherwise).
fn driver_library_present() -> bool {
    ["libcuda.so.1", "libcuda.so"].iter().any(|n| {
        // SAFETY: loading libcuda runs its initialisers, which have no preconditions.
        unsafe { libloading::Library::new(*n).is_ok() }
    })
}

impl Device {
    /// The first CUDA GPU, with the kernels compiled for it. Errors (never panics) when there is
    /// no driver, no GPU or no NVRTC.
    pub fn cuda() -> Result<Device, CudaError> {
        if !driver_library_present() {
            return Err(CudaError::Unavailable(
                "no NVIDIA driver (libcuda.so.1 not found)".into(),
            ));
        }
        let count = std::panic::catch_unwind(cudarc::driver::CudaContext::device_count)
            .map_err(|_| CudaError::Unavailable("the CUDA driver failed to load".into()))?
            .map_err(|e| CudaError::Unavailable(format!("no CUDA device: {e}")))?;
        if count < 1 {
            return Err(CudaError::Unavailable("no CUDA device".into()));
        }
        let nvrtc = Nvrtc::load()?;
        let ctx = std::panic::catch_unwind(|| cudarc::driver::CudaContext::new(0))
            .map_err(|_| CudaError::Unavailable("the CUDA driver failed to load".into()))?
            .map_err(|e| CudaError::Unavailable(format!("cannot open GPU 0: {e}")))?;
        let (major, minor) = ctx.compute_capability().map_err(drv)?;
        let name = ctx.name().map_err(drv)?;
        let ptx = nvrtc.compile(&source::kernel_source(), &format!("compute_{major}{minor}"))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| {
                CudaError::Driver(format!(
                    "loading the kernels compiled by NVRTC {}.{} ({}): {e} (an NVRTC newer than the driver writes PTX the driver cannot load: point DRIVEKIT_NVRTC at the NVRTC of the driver's CUDA version)",
                    nvrtc.version.0, nvrtc.version.1, nvrtc.path
                ))
            })?;
        let functions = Kernel::ALL
            .iter()
            .map(|k| module.load_function(k.name()).map_err(drv))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        let total = ctx.total_mem().map_err(drv)?;
        Ok(Device {
            description: format!(
                "{name} (sm_{major}{minor}, {:.0} GiB; NVRTC {}.{} from {})",
                total as f64 / (1u64 << 30) as f64,
                nvrtc.version.0,
                nvrtc.version.1,
                nvrtc.path
            ),
            kind: Kind::Cuda(CudaDev {
                ctx,
                stream,
                functions,
                _module: module,
            }),
        })
    }

    /// The kernel emulator: compiles the kernel source with the host's C++ compiler (`$CXX`, else
    /// `c++`) into a cached shared library and loads it. Each launch runs its threads one after
    /// another, in thread order.
    pub fn emulated() -> Result<Device, CudaError> {
        Self::emulated_in_order(false)
    }

    /// The kernel emulator running each launch's threads from the last to the first: a kernel
    /// whose threads read what other threads of the same launch write gives other results in
    /// this order (on a GPU such a read is a race).
    pub fn emulated_reversed() -> Result<Device, CudaError> {
        Self::emulated_in_order(true)
    }

    fn emulated_in_order(reverse: bool) -> Result<Device, CudaError> {
        let src = source::emulator_source();
        let lib_path = compile_emulator(&src)?;
        // SAFETY: the library is the kernel source drivekit just compiled.
        let lib = unsafe { libloading::Library::new(&lib_path) }
            .map_err(|e| CudaError::Unavailable(format!("{}: {e}", lib_path.display())))?;
        // SAFETY: the symbol's signature is the one emulator_source writes.
        let launch = unsafe {
            *lib.get::<unsafe extern "C" fn(i32, *const std::ffi::c_void, u32, i32) -> i32>(
                b"dk_emulated_launch",
            )
            .map_err(|e| CudaError::Unavailable(format!("{}: {e}", lib_path.display())))?
        };
        Ok(Device {
            description: format!(
                "kernel emulator ({}{})",
                lib_path.display(),
                if reverse {
                    ", threads in reverse order"
                } else {
                    ""
                }
            ),
            kind: Kind::Emulated(EmuDev {
                _lib: lib,
                launch,
                reverse,
            }),
        })
    }

    /// True on a real GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, Kind::Cuda(_))
    }

    /// A zeroed buffer of `bytes` bytes.
    pub fn alloc(&self, bytes: usize) -> Result<DevBuf, CudaError> {
        match &self.kind {
            Kind::Cuda(c) => {
                use cudarc::driver::DevicePtr;
                let slice = c.stream.alloc_zeros::<u8>(bytes.max(8)).map_err(drv)?;
                let addr = slice.device_ptr(&c.stream).0;
                Ok(DevBuf {
                    addr,
                    bytes,
                    mem: Mem::Cuda(slice),
                })
            }
            Kind::Emulated(_) => {
                let words = bytes.div_ceil(8).max(1);
                let p = Box::into_raw(vec![0u64; words].into_boxed_slice());
                Ok(DevBuf {
                    addr: p as *mut u64 as u64,
                    bytes,
                    mem: Mem::Host(p),
                })
            }
        }
    }

    /// A buffer holding `data`.
    pub fn upload_new<T: Plain>(&self, data: &[T]) -> Result<DevBuf, CudaError> {
        let mut b = self.alloc(std::mem::size_of_val(data))?;
        self.upload(&mut b, data)?;
        Ok(b)
    }

    /// Copies `data` to the start of `buf`.
    pub fn upload<T: Plain>(&self, buf: &mut DevBuf, data: &[T]) -> Result<(), CudaError> {
        let bytes = as_bytes(data);
        assert!(bytes.len() <= buf.bytes, "upload larger than its buffer");
        if bytes.is_empty() {
            return Ok(());
        }
        match (&self.kind, &mut buf.mem) {
            (Kind::Cuda(c), Mem::Cuda(s)) => {
                let mut view = s.slice_mut(0..bytes.len());
                c.stream.memcpy_htod(bytes, &mut view).map_err(drv)
            }
            (Kind::Emulated(_), Mem::Host(p)) => {
                // SAFETY: the buffer has at least bytes.len() bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), *p as *mut u8, bytes.len())
                };
                Ok(())
            }
            _ => Err(CudaError::Driver("buffer of another device".into())),
        }
    }

    /// Copies the start of `buf` into `out` (waits for the kernels before it).
    pub fn download<T: Plain>(&self, buf: &DevBuf, out: &mut [T]) -> Result<(), CudaError> {
        let bytes = as_bytes_mut(out);
        assert!(bytes.len() <= buf.bytes, "download larger than its buffer");
        if bytes.is_empty() {
            return Ok(());
        }
        match (&self.kind, &buf.mem) {
            (Kind::Cuda(c), Mem::Cuda(s)) => {
                let n = bytes.len();
                c.stream.memcpy_dtoh(&s.slice(0..n), bytes).map_err(drv)?;
                c.stream.synchronize().map_err(drv)
            }
            (Kind::Emulated(_), Mem::Host(p)) => {
                // SAFETY: the buffer has at least bytes.len() bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(*p as *const u8, bytes.as_mut_ptr(), bytes.len())
                };
                Ok(())
            }
            _ => Err(CudaError::Driver("buffer of another device".into())),
        }
    }

    /// Runs `kernel` over threads 0..threads with its argument struct.
    pub fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        args: &A,
        threads: u32,
    ) -> Result<(), CudaError> {
        assert!(
            std::any::type_name::<A>().ends_with(kernel.args_type()),
            "{kernel:?} takes {}",
            kernel.args_type()
        );
        if threads == 0 {
            return Ok(());
        }
        match &self.kind {
            Kind::Cuda(c) => {
                use cudarc::driver::PushKernelArg;
                let f = &c.functions[kernel as usize];
                let mut b = c.stream.launch_builder(f);
                b.arg(args);
                let cfg = cudarc::driver::LaunchConfig {
                    grid_dim: (threads.div_ceil(BLOCK), 1, 1),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: every address in `args` is a live buffer of this device sized for the
                // launch (the stepper allocates them from the same counts it passes).
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(drv)
            }
            Kind::Emulated(e) => {
                let _one = EMULATOR_LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
                // SAFETY: as above, with host addresses; `args` is the struct the kernel's case
                // of the emulator casts it to (Kernel::args_type).
                let code = unsafe {
                    (e.launch)(
                        kernel as i32,
                        args as *const A as *const std::ffi::c_void,
                        threads,
                        i32::from(e.reverse),
                    )
                };
                if code == 0 {
                    Ok(())
                } else {
                    Err(CudaError::Driver(format!("emulator: no kernel {kernel:?}")))
                }
            }
        }
    }

    /// Waits for every launched kernel.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        match &self.kind {
            Kind::Cuda(c) => c.stream.synchronize().map_err(drv),
            Kind::Emulated(_) => Ok(()),
        }
    }

    /// Device memory in use (bytes), on a GPU.
    pub fn memory_used(&self) -> Option<usize> {
        match &self.kind {
            Kind::Cuda(c) => c.ctx.mem_get_info().ok().map(|(free, total)| total - free),
            Kind::Emulated(_) => None,
        }
    }
}

/// Compiles the emulator library (cached by source hash under the temp directory).
fn compile_emulator(src: &str) -> Result<PathBuf, CudaError> {
    use sha2::Digest;
    // One compilation at a time in this process; other processes write their own temp files and
    // rename them into place (the same content, so whichever lands last is as good).
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let hash = sha2::Sha256::digest(format!("{cxx}\n{src}").as_bytes());
    let tag: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("drivekit-emulator-{uid}"));
    let lib = dir.join(format!("kernels-{tag}.so"));
    if lib.is_file() {
        return Ok(lib);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CudaError::Unavailable(format!("{}: {e}", dir.display())))?;
    let cpp = dir.join(format!("kernels-{tag}.{}.cpp", std::process::id()));
    std::fs::write(&cpp, src)
        .map_err(|e| CudaError::Unavailable(format!("{}: {e}", cpp.display())))?;
    let tmp = dir.join(format!("kernels-{tag}.so.{}.tmp", std::process::id()));
    let out = std::process::Command::new(&cxx)
        .args([
            "-O2",
            "-std=c++17",
            "-fPIC",
            "-shared",
            "-ffp-contract=off",
            "-x",
            "c++",
        ])
        .arg(&cpp)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| {
            CudaError::Unavailable(format!(
                "the kernel emulator needs a C++ compiler ({cxx}: {e}; install g++ or set CXX)"
            ))
        })?;
    if !out.status.success() {
        return Err(CudaError::Compile(format!(
            "{cxx} {}:\n{}",
            cpp.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let _ = std::fs::remove_file(&cpp);
    std::fs::rename(&tmp, &lib)
        .map_err(|e| CudaError::Unavailable(format!("{}: {e}", lib.display())))?;
    Ok(lib)
}
