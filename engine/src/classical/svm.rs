//! The BRISQUE regressor: libsvm's epsilon-SVR with an RBF kernel, trained on the LIVE database,
//! plus the per-feature min/max scaling applied before it.
//!
//! The parameters are the ones shipped in the `brisque` 0.2.0 Python package, converted to JSON
//! by `scripts/convert_classical_params.py` (see `engine/data/README.md`). They are parsed once,
//! on first use.

use std::sync::OnceLock;

use serde::Deserialize;

/// The number of BRISQUE features: 18 per scale, two scales.
pub(crate) const NUM_FEATURES: usize = 36;

#[derive(Debug, Deserialize)]
struct SvrFile {
    gamma: f64,
    rho: f64,
    feature_min: Vec<f64>,
    feature_max: Vec<f64>,
    sv_coef: Vec<f64>,
    support_vectors: Vec<Vec<f64>>,
}

/// A loaded model, support vectors stored contiguously.
#[derive(Debug)]
pub(crate) struct Svr {
    gamma: f64,
    rho: f64,
    feature_min: [f64; NUM_FEATURES],
    feature_max: [f64; NUM_FEATURES],
    coef: Vec<f64>,
    support_vectors: Vec<[f64; NUM_FEATURES]>,
}

fn to_array(v: &[f64], what: &str) -> [f64; NUM_FEATURES] {
    v.try_into()
        .unwrap_or_else(|_| panic!("{what} has {} values, not {NUM_FEATURES}", v.len()))
}

impl Svr {
    fn from_json(text: &str) -> Self {
        // The file is compiled in and covered by tests, so a parse failure is a build defect.
        let file: SvrFile = serde_json::from_str(text).expect("embedded BRISQUE model is valid JSON");
        assert_eq!(
            file.sv_coef.len(),
            file.support_vectors.len(),
            "one coefficient per vector"
        );
        Self {
            gamma: file.gamma,
            rho: file.rho,
            feature_min: to_array(&file.feature_min, "feature_min"),
            feature_max: to_array(&file.feature_max, "feature_max"),
            coef: file.sv_coef,
            support_vectors: file
                .support_vectors
                .iter()
                .map(|v| to_array(v, "support vector"))
                .collect(),
        }
    }

    /// The model shipped with `brisque` 0.2.0.
    pub fn live() -> &'static Self {
        static MODEL: OnceLock<Svr> = OnceLock::new();
        MODEL.get_or_init(|| Self::from_json(include_str!("../../data/brisque_live.json")))
    }

    /// Map raw features to [-1, 1] with the training set's ranges, as `brisque.scale_features`.
    fn scale(&self, features: &[f64; NUM_FEATURES]) -> [f64; NUM_FEATURES] {
        std::array::from_fn(|i| {
            let (lo, hi) = (self.feature_min[i], self.feature_max[i]);
            -1.0 + 2.0 / (hi - lo) * (features[i] - lo)
        })
    }

    /// The regression value for raw (unscaled) features: Σ coef·exp(-γ‖x - sv‖²) - ρ.
    pub fn predict(&self, features: &[f64; NUM_FEATURES]) -> f64 {
        let x = self.scale(features);
        let sum: f64 = self
            .support_vectors
            .iter()
            .zip(&self.coef)
            .map(|(sv, c)| {
                let d2: f64 = sv.iter().zip(&x).map(|(a, b)| (a - b) * (a - b)).sum();
                c * (-self.gamma * d2).exp()
            })
            .sum();
        sum - self.rho
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_model_has_the_published_shape() {
        let m = Svr::live();
        assert_eq!(m.support_vectors.len(), 770);
        assert_eq!((m.gamma, m.rho), (0.05, -155.845));
    }

    #[test]
    fn far_from_every_vector_the_prediction_is_minus_rho() {
        let m = Svr::live();
        let far = [1e6; NUM_FEATURES];
        assert!((m.predict(&far) - 155.845).abs() < 1e-9);
    }
}
