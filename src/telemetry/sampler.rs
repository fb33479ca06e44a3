//! A background sampler of the process's CPU use (from `/proc/self/stat`, every 100 ms) and, when
//! NVML loads, of every GPU's utilisation and memory; [`Sampler::finish`] turns the samples into
//! DESIGN §8's `stat` gauges.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::gpu::{GpuReading, Nvml};
use super::{stats, Telemetry};

/// Sampling period.
pub const PERIOD: Duration = Duration::from_millis(100);

/// CPU time (user + system) of this process in seconds, from /proc/self/stat.
pub fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf with a constant name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// Samples collected until [`Sampler::finish`].
#[derive(Default)]
struct Samples {
    cpu_pct: Vec<f64>,
    gpu: BTreeMap<usize, Vec<GpuReading>>,
}

/// The running sampler thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Samples>>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let nvml = Nvml::load();
            let mut out = Samples::default();
            let mut last = (Instant::now(), process_cpu_seconds());
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(PERIOD);
                let now = (Instant::now(), process_cpu_seconds());
                if let (Some(a), Some(b)) = (last.1, now.1) {
                    let wall = (now.0 - last.0).as_secs_f64();
                    if wall > 0.0 {
                        out.cpu_pct.push(100.0 * (b - a) / wall);
                    }
                }
                last = now;
                if let Some(n) = &nvml {
                    for (i, r) in n.read() {
                        out.gpu.entry(i).or_default().push(r);
                    }
                }
            }
            out
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling and writes the statistics into `t`.
    pub fn finish(mut self, t: &mut Telemetry) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(samples) = self.handle.take().and_then(|h| h.join().ok()) else {
            return;
        };
        if !samples.cpu_pct.is_empty() {
            t.cpu.insert("simulate".into(), stats(&samples.cpu_pct));
        }
        for (i, readings) in samples.gpu {
            let gpu = i.to_string();
            let util: Vec<f64> = readings.iter().map(|r| r.util_pct).collect();
            let used: Vec<f64> = readings.iter().map(|r| r.used_bytes).collect();
            t.gpu_util.insert(gpu.clone(), stats(&util));
            t.gpu_mem.insert(gpu.clone(), stats(&used));
            if let Some(r) = readings.last() {
                t.gpu_mem_total.insert(gpu, r.total_bytes);
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
