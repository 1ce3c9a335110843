//! The remote protocol with no server: worker hosts on threads of this
//! process over one in-memory broker and store, running the tile kernels of
//! `TileRegistry` exactly as worker processes would.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use wukong::remote::{Connection, RemoteConfig, WorkerThreads};
use wukong::{BlockMatrix, Error, LinalgError, Runtime, Scheduler, TileRegistry};

mod common;
use common::relative_difference;

#[test]
fn cholesky_and_gemm_on_worker_hosts_over_the_in_memory_broker() {
    let connection = Connection::in_memory().unwrap();
    let _workers = WorkerThreads::spawn(&TileRegistry, &connection, 2, "hosts").unwrap();
    for scheduler in [Scheduler::Wukong, Scheduler::Numpywren] {
        let rt = Runtime::new()
            .with_scheduler(scheduler)
            .with_remote(connection.clone(), RemoteConfig::processes("hosts"));
        let a = BlockMatrix::random_spd(300, 64, 7).unwrap();
        let l = rt.cholesky(&a).unwrap().to_array();
        let error = relative_difference(&l.dot(&l.t()), &a.to_array());
        assert!(error < 1e-13, "{scheduler:?}: {error}");

        let x = BlockMatrix::random(130, 70, 64, 64, 1).unwrap();
        let y = BlockMatrix::random(70, 90, 64, 64, 2).unwrap();
        let c = rt.gemm(&x, &y).unwrap();
        let error = relative_difference(&c.to_array(), &x.to_array().dot(&y.to_array()));
        assert!(error < 1e-13, "{scheduler:?}: {error}");
    }
}

#[test]
fn a_kernel_error_on_a_worker_host_is_the_same_typed_error_as_on_threads() {
    let connection = Connection::in_memory().unwrap();
    let _workers = WorkerThreads::spawn(&TileRegistry, &connection, 2, "failing").unwrap();
    let rt = Runtime::new().with_remote(connection, RemoteConfig::processes("failing"));
    let mut a = BlockMatrix::random_spd(200, 64, 3).unwrap().to_array();
    a[[150, 150]] = -1.0;
    let a = BlockMatrix::from_array(a.view(), 64, 64).unwrap();
    let local = Runtime::new().cholesky(&a).unwrap_err();
    let remote = rt.cholesky(&a).unwrap_err();
    match (&remote, &local) {
        (
            Error::Linalg(LinalgError::NotPositiveDefinite { tile, pivot, row }),
            Error::Linalg(LinalgError::NotPositiveDefinite {
                tile: t,
                pivot: p,
                row: r,
            }),
        ) => assert_eq!((tile, pivot, row), (t, p, r)),
        _ => panic!("remote: {remote:?}; local: {local:?}"),
    }
    assert_eq!(remote.to_string(), local.to_string());
}
