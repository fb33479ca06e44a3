//! GPU utilisation and memory through NVML, loaded at run time (`libnvidia-ml.so.1` via
//! `dlopen`): the binary links nothing from CUDA, and on a machine without an NVIDIA driver
//! [`Nvml::load`] returns `None` and the GPU panels say "no GPU".

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Memory {
    total: u64,
    free: u64,
    used: u64,
}

type InitFn = unsafe extern "C" fn() -> c_int;
type CountFn = unsafe extern "C" fn(*mut c_uint) -> c_int;
type HandleFn = unsafe extern "C" fn(c_uint, *mut *mut c_void) -> c_int;
type UtilFn = unsafe extern "C" fn(*mut c_void, *mut Utilization) -> c_int;
type MemFn = unsafe extern "C" fn(*mut c_void, *mut Memory) -> c_int;

/// One reading of one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuReading {
    /// Utilisation (percent).
    pub util_pct: f64,
    /// Memory in use (bytes).
    pub used_bytes: f64,
    /// Memory capacity (bytes).
    pub total_bytes: f64,
}

/// A loaded NVML.
pub struct Nvml {
    handles: Vec<*mut c_void>,
    util: UtilFn,
    mem: MemFn,
}

// SAFETY: NVML device handles are process-wide and NVML is thread-safe (its documentation).
unsafe impl Send for Nvml {}

fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: dlsym on a handle returned by dlopen; the caller names the symbol's true type.
    let p = unsafe { libc::dlsym(lib, name.as_ptr() as *const c_char) };
    (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Nvml {
    /// Loads NVML and opens every GPU; `None` without a driver or a GPU.
    pub fn load() -> Option<Nvml> {
        // SAFETY: dlopen with a constant, NUL-terminated name.
        let lib = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return None;
        }
        let init: InitFn = sym(lib, c"nvmlInit_v2")?;
        let count: CountFn = sym(lib, c"nvmlDeviceGetCount_v2")?;
        let handle: HandleFn = sym(lib, c"nvmlDeviceGetHandleByIndex_v2")?;
        let util: UtilFn = sym(lib, c"nvmlDeviceGetUtilizationRates")?;
        let mem: MemFn = sym(lib, c"nvmlDeviceGetMemoryInfo")?;
        // SAFETY: NVML's documented call sequence with valid out-pointers.
        unsafe {
            if init() != 0 {
                return None;
            }
            let mut n: c_uint = 0;
            if count(&mut n) != 0 || n == 0 {
                return None;
            }
            let mut handles = Vec::new();
            for i in 0..n {
                let mut h: *mut c_void = std::ptr::null_mut();
                if handle(i, &mut h) == 0 {
                    handles.push(h);
                }
            }
            (!handles.is_empty()).then_some(Nvml { handles, util, mem })
        }
    }

    /// Current readings, one per GPU (a GPU that fails to answer is skipped).
    pub fn read(&self) -> Vec<(usize, GpuReading)> {
        self.handles
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let (mut u, mut m) = (Utilization::default(), Memory::default());
                // SAFETY: valid handle from nvmlDeviceGetHandleByIndex_v2 and out-pointers.
                let ok = unsafe { (self.util)(*h, &mut u) == 0 && (self.mem)(*h, &mut m) == 0 };
                ok.then_some((
                    i,
                    GpuReading {
                        util_pct: f64::from(u.gpu),
                        used_bytes: m.used as f64,
                        total_bytes: m.total as f64,
                    },
                ))
            })
            .collect()
    }
}
