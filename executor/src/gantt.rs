//! A run's timeline as an SVG Gantt chart: one row per executor (or per
//! thread when there are too many executors to read), one bar per task,
//! coloured by the kind of operation.

use std::collections::BTreeMap;
use std::fmt::Write;

use wukong_dag::TaskId;

use crate::RunReport;

/// Above this many executors, rows are threads.
const MAX_EXECUTOR_ROWS: usize = 200;
const ROW_HEIGHT: f64 = 14.0;
const LEFT: f64 = 70.0;
const WIDTH: f64 = 1200.0;

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

impl RunReport {
    /// The timeline as a standalone SVG document. `kind` names a task's kind
    /// of operation (for example `gemm`); each kind gets a colour and a legend
    /// entry, and every bar a tooltip with the task and its times.
    pub fn gantt_svg(&self, kind: impl Fn(TaskId) -> String) -> String {
        let by_executor = self.executors <= MAX_EXECUTOR_ROWS;
        let row_of = |record: &crate::TaskRecord| {
            if by_executor {
                record.executor
            } else {
                record.thread
            }
        };
        let mut rows: BTreeMap<u32, usize> = BTreeMap::new();
        for record in &self.tasks {
            let next = rows.len();
            rows.entry(row_of(record)).or_insert(next);
        }
        for (i, row) in rows.values_mut().enumerate() {
            *row = i;
        }
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let end = self
            .tasks
            .iter()
            .map(|r| r.end.as_secs_f64())
            .fold(self.wall.as_secs_f64(), f64::max)
            .max(1e-9);
        let scale = (WIDTH - LEFT - 10.0) / end;
        let height = 40.0 + ROW_HEIGHT * rows.len() as f64 + 30.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="10">"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="4" y="14" font-size="12">{} scheduler: {} tasks on {} executors, {} threads, {:.3} s</text>"#,
            self.scheduler,
            self.tasks.len(),
            self.executors,
            self.threads,
            self.wall.as_secs_f64()
        );
        let unit = if by_executor { "executor" } else { "thread" };
        for (&id, &row) in &rows {
            let y = 30.0 + ROW_HEIGHT * row as f64;
            let _ = writeln!(
                svg,
                r#"<text x="4" y="{:.1}">{unit} {id}</text>"#,
                y + ROW_HEIGHT * 0.75
            );
        }
        for record in &self.tasks {
            let row = rows[&row_of(record)];
            let name = kind(record.task);
            let next = kinds.len();
            let colour = PALETTE[*kinds.entry(name.clone()).or_insert(next) % PALETTE.len()];
            let x = LEFT + record.start.as_secs_f64() * scale;
            let w = ((record.end.as_secs_f64() - record.start.as_secs_f64()) * scale).max(0.5);
            let y = 30.0 + ROW_HEIGHT * row as f64 + 1.0;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{colour}"><title>{} {name} (executor {}, thread {}): {:.6}–{:.6} s</title></rect>"#,
                ROW_HEIGHT - 2.0,
                record.task,
                record.executor,
                record.thread,
                record.start.as_secs_f64(),
                record.end.as_secs_f64()
            );
        }
        let legend_y = 30.0 + ROW_HEIGHT * rows.len() as f64 + 18.0;
        for (i, (name, &index)) in kinds.iter().enumerate() {
            let x = LEFT + 110.0 * i as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{x}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{}" y="{legend_y:.1}">{name}</text>"#,
                legend_y - 9.0,
                PALETTE[index % PALETTE.len()],
                x + 14.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::TaskRecord;

    #[test]
    fn one_bar_per_task_one_row_per_executor() {
        let record = |task, executor, start, end| TaskRecord {
            task: TaskId(task),
            executor,
            thread: executor % 2,
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            kernel: Duration::from_millis(end - start),
        };
        let report = RunReport {
            scheduler: "wukong".into(),
            wall: Duration::from_millis(30),
            threads: 2,
            executors: 3,
            tasks: vec![
                record(0, 0, 0, 10),
                record(1, 1, 5, 20),
                record(2, 2, 20, 30),
            ],
            ..RunReport::default()
        };
        let svg = report.gantt_svg(|t| {
            if t.0 == 0 {
                "potrf".into()
            } else {
                "gemm".into()
            }
        });
        assert_eq!(
            svg.matches("<rect").count(),
            3 + 2,
            "3 bars and 2 legend boxes"
        );
        assert!(svg.contains("executor 2"));
        assert!(svg.contains(">potrf</text>") && svg.contains(">gemm</text>"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
