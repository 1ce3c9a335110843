//! What a run would cost on AWS Lambda with S3 for tiles, at list prices.
//!
//! Every figure comes from [`PRICES`], the one place that holds prices. The
//! estimate bills each executor as one Lambda invocation lasting its
//! lifetime, each store read as an S3 GET and each write (inputs included) as
//! a PUT; transfer between S3 and Lambda in one region is free. Redis (an
//! ElastiCache node, billed by the hour whatever runs) is not included.

use serde::{Deserialize, Serialize};

use crate::RunReport;

/// List prices in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    /// Lambda compute per GB-second (x86, first pricing tier).
    pub lambda_gb_second: f64,
    /// Lambda requests, per million.
    pub lambda_million_requests: f64,
    /// S3 Standard PUT, COPY, POST, LIST requests, per thousand.
    pub s3_thousand_puts: f64,
    /// S3 Standard GET and other requests, per thousand.
    pub s3_thousand_gets: f64,
    /// Transfer from S3 to Lambda in the same region, per GB.
    pub s3_transfer_gb: f64,
}

/// AWS list prices, us-east-1, as published for 2025.
pub const PRICES: Prices = Prices {
    lambda_gb_second: 0.000_016_666_7,
    lambda_million_requests: 0.20,
    s3_thousand_puts: 0.005,
    s3_thousand_gets: 0.000_4,
    s3_transfer_gb: 0.0,
};

/// The estimated bill of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Memory size assumed for each function, MB.
    pub memory_mb: u32,
    /// Executor lifetimes × memory.
    pub lambda_gb_seconds: f64,
    /// Invocations billed (one per executor).
    pub lambda_requests: u64,
    /// S3 PUTs (inputs staged, intermediates and results written).
    pub s3_puts: u64,
    /// S3 GETs.
    pub s3_gets: u64,
    /// GB moved between S3 and the functions.
    pub transfer_gb: f64,
    /// Lambda's part, USD.
    pub lambda_usd: f64,
    /// S3's part, USD.
    pub s3_usd: f64,
    /// The total, USD.
    pub total_usd: f64,
}

impl RunReport {
    /// What this run would cost on Lambda functions of `memory_mb` MB with
    /// tiles in S3, at [`PRICES`].
    pub fn estimate_cost(&self, memory_mb: u32) -> CostEstimate {
        let gb = f64::from(memory_mb) / 1024.0;
        // Lambda bills each invocation's duration rounded up to the millisecond.
        let seconds: f64 = self
            .executor_records
            .iter()
            .map(|e| (e.end.saturating_sub(e.start).as_secs_f64() * 1000.0).ceil() / 1000.0)
            .sum();
        let lambda_gb_seconds = seconds * gb;
        let lambda_requests = self.executors as u64;
        let s3_puts = self.io.store_writes + self.io.staged_objects;
        let s3_gets = self.io.store_reads;
        let transfer_gb =
            (self.io.store_read_bytes + self.io.store_write_bytes + self.io.staged_bytes) as f64
                / 1e9;
        let lambda_usd = lambda_gb_seconds * PRICES.lambda_gb_second
            + lambda_requests as f64 / 1e6 * PRICES.lambda_million_requests;
        let s3_usd = s3_puts as f64 / 1e3 * PRICES.s3_thousand_puts
            + s3_gets as f64 / 1e3 * PRICES.s3_thousand_gets
            + transfer_gb * PRICES.s3_transfer_gb;
        CostEstimate {
            memory_mb,
            lambda_gb_seconds,
            lambda_requests,
            s3_puts,
            s3_gets,
            transfer_gb,
            lambda_usd,
            s3_usd,
            total_usd: lambda_usd + s3_usd,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wukong_dag::TaskId;

    use crate::{ExecutorRecord, IoReport, RunReport};

    #[test]
    fn the_bill_adds_up_from_the_price_table() {
        let executor = |start: u64, end: u64| ExecutorRecord {
            executor: 0,
            thread: 0,
            first_task: TaskId(0),
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            tasks: 1,
        };
        let report = RunReport {
            executors: 2,
            executor_records: vec![executor(0, 1000), executor(500, 2500)],
            io: IoReport {
                store_reads: 1000,
                store_writes: 100,
                staged_objects: 900,
                ..IoReport::default()
            },
            ..RunReport::default()
        };
        let cost = report.estimate_cost(2048);
        assert!((cost.lambda_gb_seconds - 6.0).abs() < 1e-12);
        assert_eq!(
            (cost.s3_puts, cost.s3_gets, cost.lambda_requests),
            (1000, 1000, 2)
        );
        let expected =
            6.0 * super::PRICES.lambda_gb_second + 2.0 / 1e6 * 0.20 + 1.0 * 0.005 + 1.0 * 0.0004;
        assert!((cost.total_usd - expected).abs() < 1e-12, "{cost:?}");
    }
}
