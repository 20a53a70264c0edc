//! Parity of `qrank fit` with the reference fits of the Python library choix.
//!
//! Each file in the folder (our copy of `shared/golden/bradley-terry`, or `QRANK_BT_GOLDEN_DIR`
//! when set) is fitted from the command line, exactly as a user would, and compared as the
//! folder's README prescribes, plus one stricter check:
//! - `qrank fit FILE` applies the file's alpha as choix does, so its mean-centred scores must equal
//!   choix's within 1e-4 on every file (with alpha = 0 this is the maximum-likelihood fit);
//! - `qrank fit FILE --prior-precision alpha` uses our Gaussian prior instead: its log-posterior at
//!   our fit is at least as high as at choix's estimate, and Kendall's tau between the two orderings
//!   is reported (choix's ILSR regularisation pulls strong items in, so on heavily regularised data
//!   the two estimators legitimately order close items differently);
//! - both recover the true parameters about as well as choix does (Spearman).

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::rank::{log_likelihood_of, parse_comparisons};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    std::env::var_os("QRANK_BT_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bradley-terry"))
}

fn centred(v: &[f64]) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - mean).collect()
}

fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let (mut concordant, mut discordant) = (0i64, 0i64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let s = (a[i] - a[j]) * (b[i] - b[j]);
            if s > 0.0 {
                concordant += 1;
            } else if s < 0.0 {
                discordant += 1;
            }
        }
    }
    (concordant - discordant) as f64 / (concordant + discordant).max(1) as f64
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    for (rank, &i) in order.iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (centred(&ranks(a)), centred(&ranks(b)));
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    dot(&ra, &rb) / (dot(&ra, &ra) * dot(&rb, &rb)).sqrt()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Run `qrank fit FILE --format json [extra]` and return the score of each numbered item.
fn qrank_fit(file: &Path, n_items: usize, extra: &[String]) -> Vec<f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_qrank"))
        .arg("fit")
        .arg(file)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qrank fit {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let mut scores = vec![f64::NAN; n_items];
    for item in report["ranking"]["items"].as_array().expect("items") {
        let index: usize = item["name"].as_str().unwrap().parse().unwrap();
        scores[index] = item["score"].as_f64().unwrap();
    }
    assert!(
        scores.iter().all(|s| s.is_finite()),
        "{}: an item is missing from the output",
        file.display()
    );
    scores
}

#[test]
fn qrank_fit_matches_choix_on_every_golden_file() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the six golden files, found {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let golden: Value = serde_json::from_str(&text).unwrap();
        let set = parse_comparisons(&text).unwrap();
        let alpha = golden["alpha"].as_f64().unwrap();
        let choix = centred(&floats(&golden["choix_ilsr_params"]));
        let truth = floats(&golden["true_params"]);
        let name = file.file_name().unwrap().to_string_lossy();
        let recovery = spearman(&choix, &truth);

        let ours = centred(&qrank_fit(&file, set.names.len(), &[]));
        let max_diff = ours.iter().zip(&choix).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(max_diff < 1e-4, "{name}: max |ours - choix| = {max_diff:e}");
        assert!(kendall_tau(&ours, &choix) > 0.99, "{name}: ordering differs from choix");
        let rho = spearman(&ours, &truth);
        assert!(
            rho >= recovery - 0.01,
            "{name}: recovery of true params {rho} vs choix {recovery}"
        );

        let gaussian = centred(&qrank_fit(
            &file,
            set.names.len(),
            &["--prior-precision".into(), alpha.to_string()],
        ));
        let posterior =
            |s: &[f64]| log_likelihood_of(&set.observations, s) - alpha / 2.0 * s.iter().map(|x| x * x).sum::<f64>();
        let (p_ours, p_choix) = (posterior(&gaussian), posterior(&choix));
        assert!(
            p_ours >= p_choix - 1e-6,
            "{name}: log-posterior ours {p_ours} < choix {p_choix}"
        );
        let rho_gaussian = spearman(&gaussian, &truth);
        assert!(
            rho_gaussian >= recovery - 0.01,
            "{name}: Gaussian-prior recovery {rho_gaussian} vs choix {recovery}"
        );
        let tau = kendall_tau(&gaussian, &choix);
        eprintln!(
            "{name}: choix-alpha max diff {max_diff:.2e}; Gaussian prior: log-posterior {p_ours:.3} vs choix {p_choix:.3}, \
             tau with choix {tau:.4}, spearman vs truth {rho_gaussian:.4} (choix {recovery:.4})"
        );
    }
}
