//! A small, fast, seedable generator (xoshiro256++ seeded by SplitMix64), so that
//! every tile of a random matrix can be generated independently of the others,
//! in any order, on any executor, with the same result.

pub(crate) struct TileRng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl TileRng {
    /// The stream for tile `(row, col)` of a matrix generated with `seed`.
    pub(crate) fn for_tile(seed: u64, row: usize, col: usize) -> Self {
        let mut state = seed
            ^ (row as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (col as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
        Self {
            s: [
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
            ],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [-1, 1).
    pub(crate) fn symmetric_unit(&mut self) -> f64 {
        // 53 random bits make a uniform double in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        2.0 * unit - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::TileRng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, r, c| {
            let mut rng = TileRng::for_tile(seed, r, c);
            (0..4).map(|_| rng.symmetric_unit()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 3, 2));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
        let mut rng = TileRng::for_tile(9, 0, 0);
        let values: Vec<f64> = (0..10_000).map(|_| rng.symmetric_unit()).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
