//! The Savitzky–Golay filter exactly as `scipy.signal.savgol_filter` computes it with its default
//! `mode="interp"` — the filter nuPlan's and NAVSIM's comfort metrics smooth and differentiate the
//! ego's states with. Interior samples are the convolution with `savgol_coeffs` (a least-squares
//! polynomial of `poly_order` over the window, evaluated at the window's centre, which for an even
//! window lies half a sample before the output sample, as in scipy); the first and last
//! `window / 2` samples are the polynomial fitted to the first and last `window` samples
//! (`np.polyfit`), evaluated at those samples.
//!
//! Hand-written: no maintained crate reproduces scipy's `interp` edges together with `deriv` and
//! `delta` (the ones on crates.io pad or mirror the edges instead), and nuPlan's statistics change
//! with the edge rule.

/// Why a signal cannot be filtered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavgolError {
    /// scipy: "polyorder must be less than window_length".
    #[error("poly order {poly_order} must be less than the window ({window})")]
    Order {
        /// the polynomial order
        poly_order: usize,
        /// the window length
        window: usize,
    },
    /// scipy: "If mode is 'interp', window_length must be less than or equal to the size of x".
    #[error("the window ({window}) is longer than the signal ({len} samples)")]
    Window {
        /// the window length
        window: usize,
        /// the signal length
        len: usize,
    },
}

/// Solves the square system `m · x = b` by Gaussian elimination with partial pivoting (the
/// systems here are at most `(poly_order + 1)²`, a handful of unknowns).
fn solve(mut m: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        b.swap(col, pivot);
        let p = m[col][col];
        if p == 0.0 {
            continue;
        }
        for row in col + 1..n {
            let f = m[row][col] / p;
            if f != 0.0 {
                let pivot_row = m[col].clone();
                for (x, p) in m[row].iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| m[row][k] * x[k]).sum();
        x[row] = if m[row][row] == 0.0 {
            0.0
        } else {
            (b[row] - s) / m[row][row]
        };
    }
    x
}

/// Least-squares polynomial of `order` through `(xs, ys)`: coefficients, lowest power first.
fn polyfit(xs: &[f64], ys: &[f64], order: usize) -> Vec<f64> {
    let n = order + 1;
    let mut ata = vec![vec![0.0; n]; n];
    let mut aty = vec![0.0; n];
    for (&x, &y) in xs.iter().zip(ys) {
        let pw: Vec<f64> = (0..n).map(|k| x.powi(k as i32)).collect();
        for i in 0..n {
            aty[i] += pw[i] * y;
            for j in 0..n {
                ata[i][j] += pw[i] * pw[j];
            }
        }
    }
    solve(ata, aty)
}

/// The `deriv`-th derivative of the polynomial `c` (lowest power first) at `x`.
fn polyval_deriv(c: &[f64], deriv: usize, x: f64) -> f64 {
    c.iter()
        .enumerate()
        .skip(deriv)
        .map(|(k, &ck)| {
            let falling: f64 = (0..deriv).map(|j| (k - j) as f64).product();
            ck * falling * x.powi((k - deriv) as i32)
        })
        .sum()
}

/// Weights of the window samples, oldest first, for the value (or `deriv`-th derivative, per unit
/// of `delta`) of the least-squares polynomial at the window's centre (`savgol_coeffs`).
fn coefficients(window: usize, poly_order: usize, deriv: usize, delta: f64) -> Vec<f64> {
    let pos = if window.is_multiple_of(2) {
        window as f64 / 2.0 - 0.5
    } else {
        (window / 2) as f64
    };
    let offsets: Vec<f64> = (0..window).map(|j| j as f64 - pos).collect();
    // Minimum-norm solution of A c = e_deriv · deriv! / delta^deriv with A[k][j] = offset_j^k:
    // c = Aᵀ (A Aᵀ)⁻¹ y.
    let n = poly_order + 1;
    let a: Vec<Vec<f64>> = (0..n)
        .map(|k| offsets.iter().map(|o| o.powi(k as i32)).collect())
        .collect();
    let aat: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| (0..window).map(|s| a[i][s] * a[j][s]).sum())
                .collect()
        })
        .collect();
    let mut y = vec![0.0; n];
    if deriv < n {
        let fact: f64 = (1..=deriv).map(|k| k as f64).product();
        y[deriv] = fact / delta.powi(deriv as i32);
    }
    let z = solve(aat, y);
    (0..window)
        .map(|s| (0..n).map(|k| a[k][s] * z[k]).sum())
        .collect()
}

/// `scipy.signal.savgol_filter(x, window, poly_order, deriv=deriv, delta=delta)` (mode `interp`).
pub fn savgol_filter(
    x: &[f64],
    window: usize,
    poly_order: usize,
    deriv: usize,
    delta: f64,
) -> Result<Vec<f64>, SavgolError> {
    if poly_order >= window {
        return Err(SavgolError::Order { poly_order, window });
    }
    let len = x.len();
    if window > len {
        return Err(SavgolError::Window { window, len });
    }
    let c = coefficients(window, poly_order, deriv, delta);
    let half = window / 2;
    // Interior: the window starting at i − (window − 1)/2 (for an even window its centre lies
    // half a sample before i, as ndimage.convolve1d aligns it).
    let mut y = vec![0.0; len];
    for (i, out) in y.iter_mut().enumerate().take(len - half).skip(half) {
        let start = i - (window - 1) / 2;
        *out = c
            .iter()
            .zip(&x[start..start + window])
            .map(|(w, v)| w * v)
            .sum();
    }
    // Edges: the polynomial fitted to the first / last window, at those samples.
    let idx: Vec<f64> = (0..window).map(|j| j as f64).collect();
    let scale = delta.powi(deriv as i32);
    let head = polyfit(&idx, &x[..window], poly_order);
    for (i, out) in y.iter_mut().enumerate().take(half) {
        *out = polyval_deriv(&head, deriv, i as f64) / scale;
    }
    let tail_start = len - window;
    let tail = polyfit(&idx, &x[tail_start..], poly_order);
    for (i, out) in y.iter_mut().enumerate().skip(len - half) {
        *out = polyval_deriv(&tail, deriv, (i - tail_start) as f64) / scale;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_scipy_rejects() {
        assert!(matches!(
            savgol_filter(&[1.0, 2.0], 3, 2, 0, 1.0),
            Err(SavgolError::Window { .. })
        ));
        assert!(matches!(
            savgol_filter(&[1.0; 5], 3, 3, 0, 1.0),
            Err(SavgolError::Order { .. })
        ));
    }

    #[test]
    fn matches_scipy() {
        // x_i = 0.5 i² − 3 i + 0.7 (i mod 3), i = 0..19; the expected values are scipy 1.17.1's:
        // savgol_filter(x, window, poly_order, deriv=deriv, delta=delta) (odd and even windows,
        // a window as long as the signal, derivatives of order 1 and 2).
        let x: Vec<f64> = (0..20)
            .map(|i| 0.5 * (i as f64).powi(2) - 3.0 * i as f64 + 0.7 * (i % 3) as f64)
            .collect();
        #[rustfmt::skip]
        let cases: Vec<(usize, usize, usize, f64, Vec<f64>)> = vec![
            (5, 2, 0, 1.0, vec![0.12000000000000256, -1.8599999999999983, -3.1399999999999983, -3.959999999999998, -3.299999999999998, -1.6399999999999992, 0.5399999999999986, 4.199999999999997, 8.859999999999994, 14.039999999999988, 20.699999999999985, 28.359999999999978, 36.53999999999997, 46.19999999999997, 56.859999999999964, 68.03999999999995, 80.69999999999995, 94.35999999999993, 108.77999999999996, 123.89999999999995]),
            (5, 2, 1, 0.1, vec![-23.30000000000001, -16.300000000000004, -9.300000000000011, 0.6999999999999882, 8.599999999999993, 20.7, 30.70000000000001, 38.60000000000002, 50.70000000000003, 60.700000000000045, 68.60000000000007, 80.7000000000001, 90.70000000000012, 98.60000000000014, 110.70000000000017, 120.70000000000022, 128.60000000000025, 140.70000000000027, 147.69999999999996, 154.70000000000005]),
            (8, 2, 0, 1.0, vec![0.2625000000000001, -1.9874999999999994, -3.312499999999999, -3.7124999999999986, -2.784374999999999, -0.6750000000000004, 2.434374999999998, 6.215624999999996, 11.324999999999992, 17.43437499999999, 24.215624999999985, 32.32499999999998, 41.434374999999974, 51.21562499999997, 62.32499999999996, 74.43437499999996, 80.81249999999999, 94.26249999999999, 108.63749999999996, 123.93749999999996]),
            (8, 2, 1, 0.1, vec![-27.124999999999993, -17.874999999999996, -8.624999999999995, 0.6250000000000044, 15.249999999999995, 24.49999999999999, 35.249999999999986, 45.249999999999986, 54.49999999999998, 65.24999999999997, 75.24999999999997, 84.49999999999997, 95.24999999999997, 105.24999999999997, 114.49999999999994, 125.24999999999996, 129.87499999999991, 139.1249999999999, 148.37499999999986, 157.6249999999998]),
            (15, 2, 1, 0.1, vec![-29.749999999999968, -19.749999999999975, -9.749999999999982, 0.25000000000001243, 10.250000000000004, 20.249999999999993, 30.249999999999993, 40.2499999999999, 49.87499999999979, 59.87499999999967, 70.24999999999955, 79.87499999999937, 89.8749999999992, 99.8919683257919, 109.90893665158374, 119.92590497737561, 129.94287330316746, 139.9598416289593, 149.97680995475116, 159.993778280543]),
            (20, 2, 2, 0.1, vec![99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235, 99.49760765550235]),
            (7, 3, 0, 1.0, vec![0.14999999999999658, -1.9500000000000022, -3.200000000000001, -3.6000000000000028, -3.300000000000002, -2.0000000000000013, 0.9000000000000009, 4.200000000000004, 8.500000000000007, 14.400000000000013, 20.700000000000017, 28.00000000000002, 36.90000000000002, 46.20000000000004, 56.50000000000004, 68.40000000000006, 80.70000000000006, 94.15000000000009, 108.60000000000011, 124.05000000000015]),
            (12, 2, 1, 1.0, vec![-2.960839160839162, -1.9608391608391618, -0.9608391608391615, 0.0391608391608389, 1.039160839160839, 2.039160839160839, 3.4804195804195786, 4.480419580419575, 5.53916083916083, 6.480419580419566, 7.480419580419559, 8.539160839160811, 9.480419580419545, 10.480419580419538, 10.982517482517476, 11.986713286713279, 12.990909090909085, 13.995104895104888, 14.999300699300694, 16.003496503496496]),
        ];
        for (window, order, deriv, delta, want) in cases {
            let got = savgol_filter(&x, window, order, deriv, delta).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "window {window} order {order} deriv {deriv} sample {i}: {g} vs scipy {w}"
                );
            }
        }
    }
}
