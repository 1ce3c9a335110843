//! `wukong run` on the user's own `.npy` files: every algorithm reads its
//! operands from files and writes its results, which an independent reader
//! (ndarray-npy) loads and this test checks with whole-matrix arithmetic;
//! bad files, bad outputs and runs too large for memory end with a message.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;
use std::process::{Command, Output};

use ndarray::{Array1, Array2, ShapeBuilder};

mod common;
use common::run_json;

fn wukong(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wukong"))
        .args(args)
        .output()
        .unwrap()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wukong-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A reproducible matrix with entries in [-1, 1).
fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Array2::from_shape_fn((rows, cols), |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    })
}

fn spd(n: usize, seed: u64) -> Array2<f64> {
    let x = matrix(n, n, seed);
    let mut a = x.dot(&x.t());
    for i in 0..n {
        a[[i, i]] += n as f64;
    }
    // Exactly symmetric, as numpy users often make it.
    let t = a.t().to_owned();
    (&a + &t) / 2.0
}

fn fortran(a: &Array2<f64>) -> Array2<f64> {
    let mut f = Array2::zeros(a.dim().f());
    f.assign(a);
    f
}

fn norm(a: &Array2<f64>) -> f64 {
    // Through the library: with `--all-features` ndarray's products call
    // CBLAS, which the library links.
    wukong::linalg::tile::frobenius_norm(a.view())
}

fn load(path: &str) -> Array2<f64> {
    ndarray_npy::read_npy(path).unwrap()
}

fn load_vector(path: &str) -> Array1<f64> {
    ndarray_npy::read_npy(path).unwrap()
}

fn residual(json: &serde_json::Value) -> f64 {
    json["residual"].as_f64().unwrap()
}

#[test]
fn every_algorithm_reads_its_operands_and_writes_its_results() {
    let dir = Scratch::new("all");
    // Sizes that are not multiples of the tiles.
    let (n, m, tall_cols, rhs) = (203, 577, 23, 3);
    let a = spd(n, 1);
    let b = matrix(n, rhs, 2);
    let tall = matrix(m, tall_cols, 3);
    let wide = matrix(61, 150, 4);
    let general = matrix(n, 131, 5);
    ndarray_npy::write_npy(dir.path("A.npy"), &a).unwrap();
    // Fortran order for the others, as numpy.asfortranarray writes them.
    ndarray_npy::write_npy(dir.path("B.npy"), &fortran(&b)).unwrap();
    ndarray_npy::write_npy(dir.path("T.npy"), &fortran(&tall)).unwrap();
    ndarray_npy::write_npy(dir.path("W.npy"), &wide).unwrap();
    ndarray_npy::write_npy(dir.path("G.npy"), &general).unwrap();
    ndarray_npy::write_npy(dir.path("Bt.npy"), &matrix(m, 2, 6)).unwrap();
    let gemm_b = matrix(131, 47, 7);
    ndarray_npy::write_npy(dir.path("Gb.npy"), &gemm_b).unwrap();
    let out = |name: &str| dir.path(&format!("out-{name}"));
    let file = |run: &str, name: &str| format!("{}/{name}", out(run));
    let (pa, pb, pt, pw, pg, pgb, pbt) = (
        dir.path("A.npy"),
        dir.path("B.npy"),
        dir.path("T.npy"),
        dir.path("W.npy"),
        dir.path("G.npy"),
        dir.path("Gb.npy"),
        dir.path("Bt.npy"),
    );
    let check_json = |json: &serde_json::Value, outputs: &[&str], bound: f64| {
        assert!(residual(json) < bound, "{json}");
        // No reference by default for files; the residual comes from the check.
        assert!(json["reference_seconds"].is_null(), "{json}");
        let written: Vec<String> = json["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(written, outputs, "{json}");
        assert!(json["memory_estimate_bytes"].as_u64().unwrap() > 0);
        assert!(json["peak_rss_bytes"].as_u64().unwrap() > 0);
    };

    // C = A·B.
    let json = run_json(&[
        "gemm",
        "--a",
        &pg,
        "--b",
        &pgb,
        "--out",
        &out("gemm"),
        "--tile",
        "64",
    ]);
    check_json(&json, &["C.npy"], 1e-14);
    assert_eq!(
        (json["m"].as_u64(), json["k"].as_u64(), json["n"].as_u64()),
        (Some(203), Some(131), Some(47))
    );
    let c = load(&file("gemm", "C.npy"));
    assert!(norm(&(&c - &general.dot(&gemm_b))) < 1e-13 * norm(&general) * norm(&gemm_b));

    // A = L·Lᵀ, C-order input; the factor is lower triangular.
    let json = run_json(&[
        "cholesky",
        "--a",
        &pa,
        "--out",
        &out("chol"),
        "--tile",
        "64",
    ]);
    check_json(&json, &["L.npy"], 1e-14);
    let l = load(&file("chol", "L.npy"));
    assert!(norm(&(&a - &l.dot(&l.t()))) < 1e-14 * norm(&a));
    assert!(l.indexed_iter().all(|((i, j), v)| j <= i || *v == 0.0));
    // The same with the reference, whose residual is also reported.
    let json = run_json(&["cholesky", "--a", &pa, "--tile", "64", "--reference"]);
    assert!(json["reference_seconds"].as_f64().unwrap() > 0.0);
    assert!(json["reference_residual"].as_f64().unwrap() < 1e-14);

    // TSQR with Q (Fortran-order input) and without.
    let json = run_json(&[
        "tsqr",
        "--a",
        &pt,
        "--q",
        "--out",
        &out("tsqr"),
        "--tile",
        "100",
    ]);
    check_json(&json, &["Q.npy", "R.npy"], 1e-13);
    let (q, r) = (load(&file("tsqr", "Q.npy")), load(&file("tsqr", "R.npy")));
    assert_eq!((q.dim(), r.dim()), ((m, tall_cols), (tall_cols, tall_cols)));
    assert!(norm(&(&tall - &q.dot(&r))) < 1e-13 * norm(&tall));
    let json = run_json(&["tsqr", "--a", &pt, "--out", &out("tsqr-r"), "--tile", "100"]);
    check_json(&json, &["R.npy"], 1e-13);

    // Tile QR of a general matrix.
    let json = run_json(&["qr", "--a", &pg, "--q", "--out", &out("qr"), "--tile", "64"]);
    check_json(&json, &["Q.npy", "R.npy"], 1e-13);
    let (q, r) = (load(&file("qr", "Q.npy")), load(&file("qr", "R.npy")));
    assert!(norm(&(&general - &q.dot(&r))) < 1e-13 * norm(&general));
    assert!(norm(&(q.t().dot(&q) - Array2::<f64>::eye(131))) < 1e-12);

    // The exact SVDs write U, s and Vᵀ with --vectors, s alone without.
    for (kind, input, original) in [("tall", &pt, &tall), ("full", &pw, &wide)] {
        let json = run_json(&[
            "svd",
            "--svd",
            kind,
            "--a",
            input,
            "--vectors",
            "--out",
            &out(kind),
            "--tile",
            "48",
        ]);
        check_json(&json, &["U.npy", "s.npy", "Vt.npy"], 1e-12);
        let (u, s, vt) = (
            load(&file(kind, "U.npy")),
            load_vector(&file(kind, "s.npy")),
            load(&file(kind, "Vt.npy")),
        );
        let product = (&u * &s).dot(&vt);
        assert!(
            norm(&(original - &product)) < 1e-12 * norm(original),
            "{kind}"
        );
        assert!(
            s.windows(2).into_iter().all(|w| w[0] >= w[1]),
            "{kind}: {s}"
        );
        let values_only = format!("{kind}-s");
        let json = run_json(&[
            "svd",
            "--svd",
            kind,
            "--a",
            input,
            "--out",
            &out(&values_only),
            "--tile",
            "48",
        ]);
        check_json(&json, &["s.npy"], 1e-12);
        let values = load_vector(&file(&values_only, "s.npy"));
        assert!(
            (&values - &s).iter().all(|d| d.abs() < 1e-10 * s[0]),
            "{kind}"
        );
    }
    // A matrix of rank 5: the randomized SVD finds it, and its residual
    // (the truncation's error) is small.
    let low_rank = matrix(120, 5, 8).dot(&matrix(5, 90, 9));
    ndarray_npy::write_npy(dir.path("K.npy"), &low_rank).unwrap();
    let json = run_json(&[
        "svd",
        "--svd",
        "randomized",
        "--rank",
        "5",
        "--a",
        &dir.path("K.npy"),
        "--vectors",
        "--out",
        &out("rand"),
        "--tile",
        "32",
    ]);
    check_json(&json, &["U.npy", "s.npy", "Vt.npy"], 1e-12);
    let (u, s, vt) = (
        load(&file("rand", "U.npy")),
        load_vector(&file("rand", "s.npy")),
        load(&file("rand", "Vt.npy")),
    );
    assert_eq!((u.dim(), s.len(), vt.dim()), ((120, 5), 5, (5, 90)));
    assert!(norm(&(&low_rank - &(&u * &s).dot(&vt))) < 1e-12 * norm(&low_rank));

    // The solves: Cholesky (B in Fortran order), triangular (only the lower
    // triangle of A is read), least squares.
    let json = run_json(&[
        "solve",
        "--a",
        &pa,
        "--b",
        &pb,
        "--out",
        &out("solve"),
        "--tile",
        "64",
    ]);
    check_json(&json, &["X.npy"], 1e-14);
    assert_eq!(json["k"].as_u64(), Some(rhs as u64));
    let x = load(&file("solve", "X.npy"));
    assert!(norm(&(&a.dot(&x) - &b)) < 1e-13 * norm(&a) * norm(&x));
    let json = run_json(&[
        "solve",
        "--solve",
        "triangular",
        "--a",
        &pa,
        "--b",
        &pb,
        "--out",
        &out("tri"),
        "--tile",
        "64",
    ]);
    check_json(&json, &["X.npy"], 1e-14);
    let lower = Array2::from_shape_fn((n, n), |(i, j)| if j <= i { a[[i, j]] } else { 0.0 });
    let x = load(&file("tri", "X.npy"));
    assert!(norm(&(&lower.dot(&x) - &b)) < 1e-13 * norm(&lower) * norm(&x));
    let json = run_json(&[
        "solve",
        "--solve",
        "lstsq",
        "--a",
        &pt,
        "--b",
        &pbt,
        "--out",
        &out("lstsq"),
        "--tile",
        "100",
    ]);
    check_json(&json, &["X.npy"], 1e-13);
    let (x, bt) = (load(&file("lstsq", "X.npy")), load(&pbt));
    // At the minimum the residual is orthogonal to A's columns.
    let gradient = tall.t().dot(&(&tall.dot(&x) - &bt));
    assert!(norm(&gradient) < 1e-12 * norm(&tall) * norm(&bt));

    // One right-hand side as a 1-D array gives a 1-D solution.
    let b1: Array1<f64> = b.column(0).to_owned();
    ndarray_npy::write_npy(dir.path("b1.npy"), &b1).unwrap();
    run_json(&[
        "solve",
        "--a",
        &pa,
        "--b",
        &dir.path("b1.npy"),
        "--out",
        &out("vector"),
    ]);
    let x = load_vector(&file("vector", "X.npy"));
    let error: f64 = (a.dot(&x) - &b1).iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(error < 1e-12 * b1.iter().map(|v| v * v).sum::<f64>().sqrt());

    // float32 is converted, and the report says so.
    let single = a.mapv(|v| v as f32);
    ndarray_npy::write_npy(dir.path("A32.npy"), &single).unwrap();
    let json = run_json(&["cholesky", "--a", &dir.path("A32.npy"), "--tile", "64"]);
    assert!(residual(&json) < 1e-14, "{json}");
    assert!(
        json["notes"][0].as_str().unwrap().contains("float32"),
        "{json}"
    );
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = wukong(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An error the program reports (1), not a panic (101) or an abort.
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: missing {needle:?} in {stderr}"
        );
    }
}

/// A `.npy` file with a header of our choosing.
fn raw(path: &str, header: &str, data: &[u8]) {
    let mut text = header.to_owned();
    let unpadded = 10 + text.len() + 1;
    text.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    text.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_files_are_named_and_explained() {
    let dir = Scratch::new("bad");
    let a = spd(40, 11);
    let good = dir.path("A.npy");
    ndarray_npy::write_npy(&good, &a).unwrap();
    let text = dir.path("text.npy");
    std::fs::write(&text, "1,2\n3,4\n").unwrap();
    let truncated = dir.path("truncated.npy");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let ints = dir.path("ints.npy");
    raw(
        &ints,
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
        &[0; 32],
    );
    let complex = dir.path("complex.npy");
    raw(
        &complex,
        "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 2), }",
        &[0; 64],
    );
    let vector = dir.path("vector.npy");
    ndarray_npy::write_npy(&vector, &Array1::<f64>::ones(7)).unwrap();
    let cube = dir.path("cube.npy");
    ndarray_npy::write_npy(&cube, &ndarray::Array3::<f64>::ones((2, 3, 4))).unwrap();
    let rectangle = dir.path("rectangle.npy");
    ndarray_npy::write_npy(&rectangle, &matrix(30, 20, 12)).unwrap();
    let mut with_nan = a.clone();
    with_nan[[17, 4]] = f64::NAN;
    let nan = dir.path("nan.npy");
    ndarray_npy::write_npy(&nan, &with_nan).unwrap();
    let mut with_inf = a.clone();
    with_inf[[3, 33]] = f64::NEG_INFINITY;
    let inf = dir.path("inf.npy");
    ndarray_npy::write_npy(&inf, &fortran(&with_inf)).unwrap();
    let mut unsymmetric = a.clone();
    unsymmetric[[9, 2]] += 1.0;
    let nonsym = dir.path("nonsym.npy");
    ndarray_npy::write_npy(&nonsym, &unsymmetric).unwrap();
    let mut indefinite = a.clone();
    indefinite[[25, 25]] = -1000.0;
    let notpd = dir.path("notpd.npy");
    ndarray_npy::write_npy(&notpd, &indefinite).unwrap();
    let missing = dir.path("missing.npy");

    let cases: [(&[&str], &[&str]); 16] = [
        (
            &["cholesky", "--a", &text],
            &["text.npy", "not a .npy file"],
        ),
        (
            &["cholesky", "--a", &truncated],
            &["truncated.npy", "truncated", "40×40"],
        ),
        (
            &["cholesky", "--a", &ints],
            &["ints.npy", "64-bit integer", "float64"],
        ),
        (
            &["cholesky", "--a", &complex],
            &["complex.npy", "complex", "float64"],
        ),
        (
            &["cholesky", "--a", &vector],
            &["vector.npy", "1-D array of shape (7,)", "reshape"],
        ),
        (
            &["cholesky", "--a", &cube],
            &["cube.npy", "3-D array of shape (2, 3, 4)"],
        ),
        (
            &["cholesky", "--a", &rectangle],
            &["rectangle.npy is 30×20", "square"],
        ),
        (
            &["gemm", "--a", &good, "--b", &rectangle],
            &[
                "A.npy is 40×40",
                "rectangle.npy is 30×20",
                "as many rows as A has columns",
            ],
        ),
        (
            &["solve", "--a", &good, "--b", &rectangle],
            &["rectangle.npy is 30×20", "as many rows as A"],
        ),
        (&["gemm", "--a", &good], &["needs --b"]),
        (&["tsqr", "--a", &missing], &["missing.npy", "No such file"]),
        (
            &["cholesky", "--a", &nan],
            &["nan.npy", "NaN at row 17, column 4"],
        ),
        (
            &["gemm", "--a", &good, "--b", &inf],
            &["inf.npy", "-inf at row 3, column 33"],
        ),
        (
            &["cholesky", "--a", &nonsym],
            &["nonsym.npy", "not symmetric", "(9, 2)"],
        ),
        (
            &["cholesky", "--a", &notpd, "--tile", "16"],
            &[
                "notpd.npy",
                "not positive definite",
                "row 25",
                "tile (1, 1)",
                "local pivot 9",
            ],
        ),
        (
            &["solve", "--a", &notpd, "--b", &good, "--tile", "16"],
            &["notpd.npy", "not positive definite", "row 25"],
        ),
    ];
    for (args, needles) in cases {
        fails_with(args, needles);
    }
}

#[test]
fn outputs_are_never_clobbered_unless_asked() {
    let dir = Scratch::new("outputs");
    let a = spd(30, 13);
    let input = dir.path("A.npy");
    ndarray_npy::write_npy(&input, &a).unwrap();
    let out = dir.path("out");
    let l = format!("{out}/L.npy");
    run_json(&["cholesky", "--a", &input, "--out", &out]);
    let first = std::fs::read(&l).unwrap();
    // A file in the way: refused before the run, the file untouched.
    std::fs::write(&l, b"keep me").unwrap();
    fails_with(
        &["cholesky", "--a", &input, "--out", &out],
        &["L.npy", "exists already", "--force"],
    );
    assert_eq!(std::fs::read(&l).unwrap(), b"keep me");
    // --force replaces it with the same result as before.
    run_json(&["cholesky", "--a", &input, "--out", &out, "--force"]);
    assert_eq!(std::fs::read(&l).unwrap(), first);
    // A failing run writes nothing.
    let mut indefinite = a.clone();
    indefinite[[3, 3]] = -1.0;
    let bad = dir.path("bad.npy");
    ndarray_npy::write_npy(&bad, &indefinite).unwrap();
    let fresh = dir.path("fresh");
    fails_with(
        &["cholesky", "--a", &bad, "--out", &fresh],
        &["not positive definite"],
    );
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
    // An output that cannot be a directory, or cannot be made.
    fails_with(
        &["cholesky", "--a", &input, "--out", &input],
        &["A.npy", "not a directory"],
    );
    fails_with(
        &[
            "cholesky",
            "--a",
            &input,
            "--out",
            &format!("{input}/below"),
        ],
        &["cannot write results to", "below"],
    );
    // No temporary file is left behind.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
    }
}

#[test]
fn runs_larger_than_memory_stop_before_allocating() {
    let out = wukong(&["run", "cholesky", "--n", "10000000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in ["this run needs about", "PiB", "available", "smaller --n"] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
    // The task graph is not built first for --dot either.
    let out = wukong(&[
        "run",
        "gemm",
        "--n",
        "3000000",
        "--tile",
        "64",
        "--dot",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A file whose matrix (8 TB, sparse on disk) cannot fit.
    let dir = Scratch::new("huge");
    let huge = dir.path("huge.npy");
    raw(
        &huge,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
        &[],
    );
    let file = std::fs::OpenOptions::new().write(true).open(&huge).unwrap();
    let header = file.metadata().unwrap().len();
    file.set_len(header + 8 * 1_000_000 * 1_000_000).unwrap();
    drop(file);
    let out = wukong(&["run", "cholesky", "--a", &huge, "--no-check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TiB") && stderr.contains("use a smaller matrix"),
        "{stderr}"
    );
}

#[test]
fn options_that_do_not_go_with_files_are_refused() {
    let dir = Scratch::new("options");
    let input = dir.path("A.npy");
    ndarray_npy::write_npy(&input, &spd(10, 1)).unwrap();
    for (args, needle) in [
        (
            vec!["cholesky", "--a", &input, "--n", "10"],
            "cannot be used with",
        ),
        (
            vec!["cholesky", "--a", &input, "--b", &input],
            "takes one matrix",
        ),
        (vec!["cholesky", "--n", "10", "--force"], "--out"),
        (
            vec!["cholesky", "--a", &input, "--reference", "--no-reference"],
            "cannot be used with",
        ),
        (
            vec!["solve", "--a", &input, "--b", &input, "--rhs", "3"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(&args);
        let out = wukong(&all);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // Generated inputs can be written too, and --no-check skips the residual.
    let out_dir = dir.path("generated");
    let json = run_json(&[
        "gemm",
        "--n",
        "50",
        "--tile",
        "16",
        "--out",
        &out_dir,
        "--no-check",
    ]);
    assert!(json["residual"].is_null(), "{json}");
    assert!(json["reference_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(load(&format!("{out_dir}/C.npy")).dim(), (50, 50));
}
