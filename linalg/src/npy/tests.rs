#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

use ndarray::{Array2, ShapeBuilder};

use super::*;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wukong-npy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample(rows: usize, cols: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(r, c)| (r * 1000 + c) as f64 * 0.5 - 7.25)
}

/// A `.npy` file with a header of our choosing around `data`.
fn raw(path: &std::path::Path, header_text: &str, data: &[u8]) {
    let mut bytes = header_bytes(header_text);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn problem(result: Result<impl std::fmt::Debug, LinalgError>) -> NpyError {
    match result.unwrap_err() {
        LinalgError::Npy { problem, .. } => problem,
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn reads_c_and_fortran_order_in_ragged_tiles() {
    let dir = Scratch::new("orders");
    let a = sample(37, 23);
    let c_path = dir.path("c.npy");
    let f_path = dir.path("f.npy");
    ndarray_npy::write_npy(&c_path, &a).unwrap();
    let mut fortran = Array2::zeros((37, 23).f());
    fortran.assign(&a);
    ndarray_npy::write_npy(&f_path, &fortran).unwrap();
    for path in [&c_path, &f_path] {
        let file = NpyMatrix::open(path).unwrap();
        assert_eq!(file.shape(), (37, 23));
        assert_eq!(file.is_fortran_order(), path == &f_path);
        for (tr, tc) in [(8, 5), (37, 23), (100, 100), (1, 23), (37, 1)] {
            let m = file.read_tiles(tr, tc).unwrap();
            assert_eq!(m.to_array(), a, "{path:?} in {tr}×{tc} tiles");
        }
        assert_eq!(file.read_whole().unwrap(), a);
    }
}

#[test]
fn written_files_read_back_with_an_independent_reader() {
    let dir = Scratch::new("write");
    let a = sample(29, 41);
    let m = BlockMatrix::from_array(a.view(), 8, 16).unwrap();
    let path = dir.path("m.npy");
    write_matrix(&path, &m, Overwrite::Refuse).unwrap();
    let back: Array2<f64> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(back, a);
    // The header is padded so that the data start at a multiple of 64.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!((bytes.len() - 29 * 41 * 8) % 64, 0);
    assert_eq!(
        NpyMatrix::open(&path)
            .unwrap()
            .read_tiles(5, 7)
            .unwrap()
            .to_array(),
        a
    );

    let values = [3.0, -1.5, 0.25];
    let v = dir.path("v.npy");
    write_vector(&v, &values, Overwrite::Refuse).unwrap();
    let back: ndarray::Array1<f64> = ndarray_npy::read_npy(&v).unwrap();
    assert_eq!(back.to_vec(), values);
    let column = NpyMatrix::open_vector_or_matrix(&v).unwrap();
    assert_eq!(column.shape(), (3, 1));
    assert!(matches!(
        problem(NpyMatrix::open(&v)),
        NpyError::Dimensions { shape } if shape == [3]
    ));
}

#[test]
fn an_existing_file_is_kept_unless_replacing_is_asked_for() {
    let dir = Scratch::new("exists");
    let path = dir.path("out.npy");
    std::fs::write(&path, b"precious").unwrap();
    let m = BlockMatrix::from_array(sample(4, 3).view(), 2, 2).unwrap();
    let error = write_matrix(&path, &m, Overwrite::Refuse).unwrap_err();
    assert!(
        matches!(
            &error,
            LinalgError::Npy {
                problem: NpyError::Exists,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--force"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    write_matrix(&path, &m, Overwrite::Replace).unwrap();
    let back: Array2<f64> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(back, sample(4, 3));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn a_write_into_a_missing_directory_fails_and_leaves_nothing() {
    let dir = Scratch::new("missing");
    let path = dir.path("no/such/dir/out.npy");
    let m = BlockMatrix::from_array(sample(4, 3).view(), 2, 2).unwrap();
    let error = write_matrix(&path, &m, Overwrite::Refuse).unwrap_err();
    assert!(error.to_string().contains("out.npy"), "{error}");
    assert!(matches!(
        problem(Err::<(), _>(error)),
        NpyError::Io {
            action: "create",
            ..
        }
    ));
}

#[test]
fn float32_and_big_endian_values_are_converted() {
    let dir = Scratch::new("widths");
    let path = dir.path("f4.npy");
    let values: Vec<u8> = [1.5f32, -2.0, 0.125, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    raw(
        &path,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &values,
    );
    let file = NpyMatrix::open(&path).unwrap();
    assert!(file.element().is_converted());
    assert_eq!(file.element().name(), "float32");
    let m = file.read_tiles(2, 2).unwrap().to_array();
    assert_eq!(m, ndarray::arr2(&[[1.5, -2.0, 0.125], [4.0, 5.0, 6.0]]));

    let path = dir.path("be.npy");
    let values: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    raw(
        &path,
        "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 2), }",
        &values,
    );
    let m = NpyMatrix::open(&path)
        .unwrap()
        .read_tiles(1, 1)
        .unwrap()
        .to_array();
    assert_eq!(m, ndarray::arr2(&[[1.0, 3.0], [2.0, 4.0]]));
}

#[test]
fn bad_files_are_named_and_explained() {
    let dir = Scratch::new("bad");
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "int.npy",
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
            vec![0; 32],
            "64-bit integer",
        ),
        (
            "complex.npy",
            "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 2), }",
            vec![0; 64],
            "128-bit complex",
        ),
        (
            "half.npy",
            "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }",
            vec![0; 8],
            "16-bit floating-point",
        ),
        (
            "bool.npy",
            "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }",
            vec![0; 4],
            "boolean",
        ),
        (
            "record.npy",
            "{'descr': [('x', '<f8')], 'fortran_order': False, 'shape': (2,), }",
            vec![0; 16],
            "structured",
        ),
        (
            "cube.npy",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 2), }",
            vec![0; 64],
            "3-D array of shape (2, 2, 2)",
        ),
        (
            "scalar.npy",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            vec![0; 8],
            "0-D array",
        ),
        (
            "empty.npy",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 5), }",
            vec![],
            "empty 0×5",
        ),
        (
            "short.npy",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }",
            vec![0; 90],
            "truncated",
        ),
        (
            "header.npy",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4)",
            vec![],
            "malformed",
        ),
        (
            "order.npy",
            "{'descr': '<f8', 'fortran_order': 'no', 'shape': (1, 1), }",
            vec![0; 8],
            "fortran_order",
        ),
    ];
    for (name, header_text, data, expected) in cases {
        let path = dir.path(name);
        raw(&path, header_text, &data);
        let error = NpyMatrix::open(&path).unwrap_err().to_string();
        assert!(error.contains(name), "{name}: {error}");
        assert!(error.contains(expected), "{name}: {error}");
    }
    let text = dir.path("text.npy");
    std::fs::write(&text, "a,b\n1,2\n").unwrap();
    assert!(matches!(problem(NpyMatrix::open(&text)), NpyError::NotNpy));
    let nothing = dir.path("nothing.npy");
    std::fs::write(&nothing, "").unwrap();
    assert!(matches!(
        problem(NpyMatrix::open(&nothing)),
        NpyError::NotNpy
    ));
    let error = NpyMatrix::open(dir.path("absent.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("absent.npy") && error.contains("open failed"),
        "{error}"
    );
    let version = dir.path("v9.npy");
    std::fs::write(&version, b"\x93NUMPY\x09\x00\x10\x00{}").unwrap();
    assert!(matches!(
        problem(NpyMatrix::open(&version)),
        NpyError::Version { major: 9, minor: 0 }
    ));
}

#[test]
fn nan_and_infinity_are_reported_with_their_position() {
    let dir = Scratch::new("nan");
    for (fortran, bad, (row, col)) in [
        (false, f64::NAN, (17, 4)),
        (true, f64::INFINITY, (3, 19)),
        (false, f64::NEG_INFINITY, (0, 0)),
    ] {
        let mut a = sample(20, 21);
        a[[row, col]] = bad;
        let path = dir.path("bad.npy");
        if fortran {
            let mut f = Array2::zeros((20, 21).f());
            f.assign(&a);
            ndarray_npy::write_npy(&path, &f).unwrap();
        } else {
            ndarray_npy::write_npy(&path, &a).unwrap();
        }
        let file = NpyMatrix::open(&path).unwrap();
        match problem(file.read_tiles(8, 8)) {
            NpyError::NonFinite {
                row: r,
                col: c,
                value,
            } => {
                assert_eq!((r, c), (row, col));
                assert_eq!(value.is_nan(), bad.is_nan());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn version_2_headers_are_read() {
    let dir = Scratch::new("v2");
    let path = dir.path("v2.npy");
    let text = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
    let mut padded = text.to_owned();
    let unpadded = 12 + padded.len() + 1;
    padded.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    padded.push('\n');
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(padded.len() as u32).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    for v in [2.5f64, -1.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let m = NpyMatrix::open(&path)
        .unwrap()
        .read_tiles(1, 1)
        .unwrap()
        .to_array();
    assert_eq!(m, ndarray::arr2(&[[2.5, -1.0]]));
}

#[test]
fn untrusted_sizes_and_non_files_are_errors_not_panics() {
    let dir = Scratch::new("sizes");
    let path = dir.path("huge.npy");
    raw(
        &path,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775808, 9223372036854775808), }",
        &[],
    );
    let error = NpyMatrix::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("more values than any file can hold"),
        "{error}"
    );
    let error = NpyMatrix::open(&dir.0).unwrap_err().to_string();
    assert!(error.contains("not a regular file"), "{error}");
}

#[test]
fn staged_results_appear_only_when_committed_and_never_share_a_name() {
    let dir = Scratch::new("staged");
    let m = BlockMatrix::from_array(sample(5, 4).view(), 2, 2).unwrap();
    let path = dir.path("m.npy");
    let first = stage_matrix(&path, &m).unwrap();
    let second = stage_matrix(&path, &m).unwrap();
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    assert_eq!(first.commit(Overwrite::Refuse).unwrap(), path);
    // The second may not replace the first, and leaves nothing behind.
    assert!(matches!(
        second.commit(Overwrite::Refuse),
        Err(LinalgError::Npy {
            problem: NpyError::Exists,
            ..
        })
    ));
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    // Dropped uncommitted: removed.
    drop(stage_vector(dir.path("v.npy"), &[1.0]).unwrap());
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}
