//! How fast tiles are encoded and decoded by the checked `.npy` codec.
//! `cargo run --release -p wukong-bench --example codec_probe`

use std::time::Instant;

use wukong::linalg::tile::zeros;
use wukong::storage::JobId;
use wukong::storage::codec::{decode_tile, encode_tile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = JobId::new("probe")?.key("tile")?;
    for size in [256usize, 512, 1024] {
        let mut tile = zeros(size, size);
        tile.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
        let reps = 50;
        let start = Instant::now();
        let mut bytes = encode_tile(&key, &tile)?;
        for _ in 1..reps {
            bytes = encode_tile(&key, &tile)?;
        }
        let encode = start.elapsed().as_secs_f64() / reps as f64;
        let start = Instant::now();
        for _ in 0..reps {
            let back = decode_tile(&key, &bytes)?;
            assert_eq!(back.dim(), (size, size));
            assert_eq!(
                back.strides(),
                tile.strides(),
                "the decoded tile keeps its layout"
            );
        }
        let decode = start.elapsed().as_secs_f64() / reps as f64;
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{size}x{size}: encode {:.3} ms ({:.0} MB/s), decode {:.3} ms ({:.0} MB/s)",
            encode * 1e3,
            mb / encode,
            decode * 1e3,
            mb / decode
        );
    }
    Ok(())
}
