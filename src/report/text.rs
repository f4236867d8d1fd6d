//! The report for a terminal.
use super::model::Report;

pub fn render(report: &Report, _colour: bool, _width: usize) -> String {
    report.verdict.line.clone()
}
