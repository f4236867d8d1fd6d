//! The report as one self-contained HTML page (filled in below).

use super::model::Report;

pub fn render(report: &Report) -> String {
    format!("<!doctype html><title>hpc-health report</title><p>{}</p>", report.verdict.line)
}
