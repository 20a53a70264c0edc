//! The little linear algebra NIQE needs: the quadratic form xᵀ A⁺ x with A⁺ the Moore-Penrose
//! pseudo-inverse of a small symmetric matrix, as `scipy.linalg.pinv` defines it.
//!
//! A symmetric matrix's singular values are its absolute eigenvalues, so a cyclic Jacobi
//! eigen-decomposition (robust, and ample for 36 x 36) gives the pseudo-inverse directly.

/// Eigenvalues and eigenvectors (as columns of a row-major `n` x `n` matrix) of symmetric `a`.
fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum();
        if off <= scale * 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Rotation angle that zeroes a[p][q] (Golub and Van Loan, Algorithm 8.4.1).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                // `signum` of +0.0 is 1, so a zero angle still rotates by 45°.
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// xᵀ A⁺ x for symmetric `a` (row-major, `x.len()` square). Eigenvalues below
/// `n · ε · max|λ|` are treated as zero, scipy's default cut-off.
pub(crate) fn pinv_quadratic_form(a: &[f64], x: &[f64]) -> f64 {
    let n = x.len();
    assert_eq!(a.len(), n * n, "matrix and vector sizes disagree");
    let (values, vectors) = symmetric_eigen(a, n);
    let largest = values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let cutoff = n as f64 * f64::EPSILON * largest;
    values
        .iter()
        .enumerate()
        .filter(|(_, l)| l.abs() > cutoff)
        .map(|(k, l)| {
            let proj: f64 = (0..n).map(|i| vectors[i * n + k] * x[i]).sum();
            proj * proj / l
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_a_full_rank_matrix() {
        // A = [[4, 1], [1, 3]], A⁻¹ = [[3, -1], [-1, 4]] / 11; x = (1, 2): xᵀA⁻¹x = 15/11.
        let q = pinv_quadratic_form(&[4.0, 1.0, 1.0, 3.0], &[1.0, 2.0]);
        assert!((q - 15.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn ignores_the_null_space_of_a_singular_matrix() {
        // A = u uᵀ with u = (1, 1): A⁺ = A / 4, so x = (1, -1) (in the null space) gives 0, and
        // x = (1, 1) gives 1.
        let a = [1.0, 1.0, 1.0, 1.0];
        assert!(pinv_quadratic_form(&a, &[1.0, -1.0]).abs() < 1e-12);
        assert!((pinv_quadratic_form(&a, &[1.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
