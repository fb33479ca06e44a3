//! NVRTC, found and loaded at run time. cudarc's own loader looks for `libnvrtc.so` and the `.so.12`
//! family only and panics when none is there; drivekit looks further — CUDA 13's `.so.13`, the CUDA
//! toolkit directories and the NVRTC of pip's `nvidia-cuda-nvrtc-cu12` / `-cu13` wheels — and
//! returns an error instead, so `--backend auto` can fall back to the CPU with a clear message.
//! `DRIVEKIT_NVRTC=/path/to/libnvrtc.so.N` overrides the search.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

use super::device::CudaError;

type Prog = *mut std::ffi::c_void;

/// A loaded NVRTC.
pub struct Nvrtc {
    lib: libloading::Library,
    /// Where it was found (a file path, or the name the dynamic loader resolved).
    pub path: String,
    /// NVRTC's (major, minor) version.
    pub version: (i32, i32),
}

/// Sonames tried through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache), newest first.
const SONAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

/// Directories that hold NVRTC in common installations, besides the loader's own search.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.push(Path::new(&v).join("lib64"));
            dirs.push(Path::new(&v).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    if let Ok(rd) = std::fs::read_dir("/usr/local") {
        let mut versions: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("cuda-"))
            })
            .map(|p| p.join("lib64"))
            .collect();
        versions.sort();
        versions.reverse();
        dirs.extend(versions);
    }
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs.push(PathBuf::from("/opt/cuda/lib64"));
    // pip wheels: nvidia/cuda_nvrtc/lib (cu12) and nvidia/cu13/lib (cu13) under site-packages.
    for sp in python_paths() {
        dirs.push(sp.join("nvidia/cu13/lib"));
        dirs.push(sp.join("nvidia/cuda_nvrtc/lib"));
    }
    dirs
}

/// `sys.path` of the `python3` on PATH, if there is one (pip's wheels live there).
fn python_paths() -> Vec<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; print('\\n'.join(p for p in sys.path if p))",
        ])
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect(),
        _ => Vec::new(),
    }
}

fn open(name: &std::ffi::OsStr) -> Option<libloading::Library> {
    // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
    unsafe { libloading::Library::new(name).ok() }
}

impl Nvrtc {
    /// Finds and loads NVRTC; the error lists where it looked.
    pub fn load() -> Result<Nvrtc, CudaError> {
        let mut tried: Vec<String> = Vec::new();
        let mut found: Option<(libloading::Library, String)> = None;
        if let Some(p) = std::env::var_os("DRIVEKIT_NVRTC") {
            tried.push(p.to_string_lossy().into_owned());
            found = open(&p).map(|l| (l, p.to_string_lossy().into_owned()));
            if found.is_none() {
                return Err(CudaError::Unavailable(format!(
                    "DRIVEKIT_NVRTC={} cannot be loaded",
                    p.to_string_lossy()
                )));
            }
        }
        if found.is_none() {
            for name in SONAMES {
                tried.push(name.to_string());
                if let Some(l) = open(name.as_ref()) {
                    found = Some((l, name.to_string()));
                    break;
                }
            }
        }
        if found.is_none() {
            'dirs: for dir in candidate_dirs() {
                for name in SONAMES {
                    let p = dir.join(name);
                    if p.is_file() {
                        tried.push(p.display().to_string());
                        if let Some(l) = open(p.as_os_str()) {
                            found = Some((l, p.display().to_string()));
                            break 'dirs;
                        }
                    }
                }
            }
        }
        let Some((lib, path)) = found else {
            return Err(CudaError::Unavailable(format!(
                "NVRTC (libnvrtc.so.12 or .13) not found; tried {} (set DRIVEKIT_NVRTC, add the CUDA toolkit's lib64 to LD_LIBRARY_PATH, or pip install nvidia-cuda-nvrtc-cu12)",
                tried.join(", ")
            )));
        };
        let mut nv = Nvrtc {
            lib,
            path,
            version: (0, 0),
        };
        let (mut major, mut minor) = (0, 0);
        nv.check("nvrtcVersion", unsafe {
            nv.sym::<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int>("nvrtcVersion")?(
                &mut major, &mut minor,
            )
        })?;
        nv.version = (major, minor);
        Ok(nv)
    }

    fn sym<F: Copy>(&self, name: &str) -> Result<F, CudaError> {
        // SAFETY: the caller names the symbol with its C signature from nvrtc.h.
        unsafe {
            self.lib
                .get::<F>(name.as_bytes())
                .map(|s| *s)
                .map_err(|e| CudaError::Unavailable(format!("{}: {name}: {e}", self.path)))
        }
    }

    fn error_string(&self, code: c_int) -> String {
        let f = self.sym::<unsafe extern "C" fn(c_int) -> *const c_char>("nvrtcGetErrorString");
        match f {
            // SAFETY: NVRTC returns a static string for any code.
            Ok(f) => unsafe { CStr::from_ptr(f(code)).to_string_lossy().into_owned() },
            Err(_) => format!("error {code}"),
        }
    }

    fn check(&self, what: &str, code: c_int) -> Result<(), CudaError> {
        if code == 0 {
            Ok(())
        } else {
            Err(CudaError::Compile(format!(
                "{what}: {}",
                self.error_string(code)
            )))
        }
    }

    /// Compiles `src` for virtual architecture `arch` (e.g. `compute_90`) with the options the
    /// backend needs for results equal to the CPU's (no fused multiply-add). Returns the PTX;
    /// a compilation error carries NVRTC's log.
    pub fn compile(&self, src: &str, arch: &str) -> Result<String, CudaError> {
        type Create = unsafe extern "C" fn(
            *mut Prog,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> c_int;
        type Compile = unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int;
        type Size = unsafe extern "C" fn(Prog, *mut usize) -> c_int;
        type Get = unsafe extern "C" fn(Prog, *mut c_char) -> c_int;
        type Destroy = unsafe extern "C" fn(*mut Prog) -> c_int;
        let create: Create = self.sym("nvrtcCreateProgram")?;
        let compile: Compile = self.sym("nvrtcCompileProgram")?;
        let log_size: Size = self.sym("nvrtcGetProgramLogSize")?;
        let get_log: Get = self.sym("nvrtcGetProgramLog")?;
        let ptx_size: Size = self.sym("nvrtcGetPTXSize")?;
        let get_ptx: Get = self.sym("nvrtcGetPTX")?;
        let destroy: Destroy = self.sym("nvrtcDestroyProgram")?;
        let c_src = CString::new(src).map_err(|e| CudaError::Compile(e.to_string()))?;
        let name = c"drivekit_step.cu";
        let opts: Vec<CString> = [
            format!("--gpu-architecture={arch}"),
            "--fmad=false".into(),
            "--std=c++17".into(),
        ]
        .into_iter()
        .map(|o| CString::new(o).expect("no NUL in options"))
        .collect();
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: pointers are valid C strings for the duration of the calls; the program is
        // destroyed on every path below.
        unsafe {
            self.check(
                "nvrtcCreateProgram",
                create(
                    &mut prog,
                    c_src.as_ptr(),
                    name.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                ),
            )?;
            let code = compile(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
            let mut n = 0usize;
            let mut log = String::new();
            if log_size(prog, &mut n) == 0 && n > 1 {
                let mut buf = vec![0u8; n];
                if get_log(prog, buf.as_mut_ptr() as *mut c_char) == 0 {
                    log = String::from_utf8_lossy(&buf[..n - 1]).into_owned();
                }
            }
            if code != 0 {
                destroy(&mut prog);
                return Err(CudaError::Compile(format!(
                    "NVRTC {}.{} ({}) could not compile the kernels for {arch}: {}\n{log}",
                    self.version.0,
                    self.version.1,
                    self.path,
                    self.error_string(code)
                )));
            }
            let mut n = 0usize;
            let r = ptx_size(prog, &mut n);
            let mut buf = vec![0u8; n.max(1)];
            let r2 = if r == 0 {
                get_ptx(prog, buf.as_mut_ptr() as *mut c_char)
            } else {
                r
            };
            destroy(&mut prog);
            self.check("nvrtcGetPTX", r2)?;
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    }
}
