//! BlockMatrix construction, generators and `.npy` files.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use ndarray::{Array2, ShapeBuilder};
use wukong::{BlockMatrix, LinalgError};

#[test]
fn from_and_to_array_round_trip_with_ragged_tiles() {
    let whole = Array2::from_shape_fn((23, 17), |(i, j)| (i * 100 + j) as f64);
    for (tr, tc) in [(1, 1), (5, 4), (23, 17), (100, 3)] {
        let block = BlockMatrix::from_array(whole.view(), tr, tc).unwrap();
        assert_eq!(block.to_array(), whole);
        assert!(
            block.tiles().iter().all(|t| t.t().is_standard_layout()),
            "tiles are column-major"
        );
    }
    let fortran =
        Array2::from_shape_vec((23, 17).f(), whole.t().iter().copied().collect()).unwrap();
    assert_eq!(
        BlockMatrix::from_array(fortran.view(), 4, 4)
            .unwrap()
            .to_array(),
        fortran
    );
}

#[test]
fn generators_do_not_depend_on_the_tile_size() {
    let a = BlockMatrix::random(37, 29, 8, 8, 3).unwrap().to_array();
    let b = BlockMatrix::random(37, 29, 37, 5, 3).unwrap().to_array();
    assert_eq!(a, b);
    assert_ne!(a, BlockMatrix::random(37, 29, 8, 8, 4).unwrap().to_array());
    let s = BlockMatrix::random_spd(41, 6, 7).unwrap().to_array();
    assert_eq!(s, BlockMatrix::random_spd(41, 41, 7).unwrap().to_array());
    assert_eq!(s, s.t());
    for i in 0..41 {
        let off: f64 = (0..41).filter(|&j| j != i).map(|j| s[[i, j]].abs()).sum();
        assert!(s[[i, i]] > off, "strictly diagonally dominant row {i}");
    }
}

#[test]
fn npy_files_round_trip() {
    let dir = std::env::temp_dir().join(format!("wukong-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.npy");
    let a = BlockMatrix::random(19, 11, 4, 4, 1).unwrap();
    a.write_npy(&path).unwrap();
    let back = BlockMatrix::read_npy(&path, 6, 6).unwrap();
    assert_eq!(back.to_array(), a.to_array());
    assert_eq!(back.layout().tile_rows(), 6);

    // A C-order file as numpy writes by default.
    let c_order = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f64);
    ndarray_npy::write_npy(dir.join("c.npy"), &c_order).unwrap();
    assert_eq!(
        BlockMatrix::read_npy(dir.join("c.npy"), 2, 2)
            .unwrap()
            .to_array(),
        c_order
    );

    let err = BlockMatrix::read_npy(dir.join("missing.npy"), 2, 2).unwrap_err();
    assert!(matches!(err, LinalgError::Npy { action: "read", .. }));
    std::fs::write(dir.join("junk.npy"), b"not a numpy file").unwrap();
    let err = BlockMatrix::read_npy(dir.join("junk.npy"), 2, 2).unwrap_err();
    assert!(err.to_string().contains("junk.npy"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn from_tiles_checks_every_tile_shape() {
    let layout = wukong::TileLayout::new(5, 5, 3, 3).unwrap();
    let tiles = (0..4)
        .map(|_| std::sync::Arc::new(Array2::zeros((3, 3))))
        .collect();
    let err = BlockMatrix::from_tiles(layout, tiles).unwrap_err();
    assert!(
        err.to_string()
            .contains("tile (0, 1) is (3, 3) but the layout needs (3, 2)"),
        "{err}"
    );
}

#[test]
fn retiling_keeps_every_entry_and_shares_what_it_can() {
    let whole = Array2::from_shape_fn((29, 13), |(i, j)| (i * 100 + j) as f64);
    let block = BlockMatrix::from_array(whole.view(), 8, 5).unwrap();
    for (tr, tc) in [(1, 1), (3, 7), (29, 13), (100, 100), (8, 5)] {
        let retiled = block.retiled(tr, tc).unwrap();
        assert_eq!(retiled.to_array(), whole, "{tr}×{tc}");
        assert_eq!(retiled.layout().tile_rows(), tr.min(29));
    }
    // The same tiling shares the tiles.
    let same = block.retiled(8, 5).unwrap();
    assert!(std::sync::Arc::ptr_eq(same.tile(1, 1), block.tile(1, 1)));
    assert_eq!(block.get(17, 11), 1711.0);
}

#[test]
fn symmetry_is_checked_within_a_tolerance_and_names_the_entry() {
    let n = 37;
    let mut a = Array2::from_shape_fn((n, n), |(i, j)| 1.0 / (1.0 + i as f64 + j as f64));
    for i in 0..n {
        a[[i, i]] += n as f64;
    }
    let block = |a: &Array2<f64>| BlockMatrix::from_array(a.view(), 8, 8).unwrap();
    block(&a).check_symmetric("A", 1e-10).unwrap();
    // Rounding-level differences pass.
    a[[20, 3]] *= 1.0 + 1e-14;
    block(&a).check_symmetric("A", 1e-10).unwrap();
    a[[20, 3]] += 0.5;
    match block(&a).check_symmetric("A", 1e-10).unwrap_err() {
        LinalgError::NotSymmetric { row, col, .. } => assert_eq!((row, col), (20, 3)),
        other => panic!("{other}"),
    }
    // Tiles that are not square.
    match BlockMatrix::from_array(a.view(), 6, 9)
        .unwrap()
        .check_symmetric("A", 1e-10)
        .unwrap_err()
    {
        LinalgError::NotSymmetric { row, col, .. } => assert_eq!((row, col), (20, 3)),
        other => panic!("{other}"),
    }
    let rectangle = BlockMatrix::random(5, 4, 2, 2, 1).unwrap();
    assert!(rectangle.check_symmetric("A", 1e-10).is_err());
}

#[test]
fn a_triangle_input_reads_one_triangle_only() {
    use wukong::{Graph, Triangle};
    // A full matrix whose upper triangle must not count.
    let whole = Array2::from_shape_fn(
        (23, 23),
        |(i, j)| if j > i { 1e6 } else { (i + j + 1) as f64 },
    );
    let lower = Array2::from_shape_fn((23, 23), |(i, j)| if j > i { 0.0 } else { whole[[i, j]] });
    let x = Array2::from_shape_fn((23, 3), |(i, j)| (i as f64) - (j as f64));
    let matrix = BlockMatrix::from_array(whole.view(), 5, 5).unwrap();
    let graph = Graph::new();
    let t = graph.input_triangle(&matrix, Triangle::Lower).unwrap();
    let rhs = graph
        .input(&BlockMatrix::from_array(x.view(), 5, 5).unwrap())
        .unwrap();
    let product = t.matmul(&rhs).unwrap();
    let (results, _) = wukong::Runtime::new()
        .with_threads(2)
        .compute(&graph, &[&product], &Default::default())
        .unwrap();
    assert_eq!(results[0].to_array(), lower.dot(&x));
    // The input itself is untouched.
    assert_eq!(matrix.to_array(), whole);
}
