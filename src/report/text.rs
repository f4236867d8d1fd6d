//! The report for a terminal: the verdict first, then the state and each signal as a
//! sparkline over the span with its range, then recoveries and the incident timeline.
//! Readable without colour (each state has its own character); colour only adds to it.

use super::clock::{duration, LocalTime};
use super::model::{Point, Report, Series, Status};
use super::palette::status_colour;
use crate::durable::IncidentRecord;
use crate::incident::IncidentSeverity;

/// Incident kinds that happen on schedule: counted, not listed in the timeline.
pub const ROUTINE_KINDS: [&str; 1] = ["checkpoint_created"];
/// Timeline lines at most; the rest are counted.
const MAX_TIMELINE: usize = 60;
const LABEL: usize = 14;
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

struct Out {
    text: String,
    colour: bool,
}

impl Out {
    fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref().trim_end());
        self.text.push('\n');
    }

    fn paint(&self, status: Status, text: &str) -> String {
        if self.colour {
            format!("\x1b[{}m{text}\x1b[0m", status_colour(status).ansi)
        } else {
            text.to_owned()
        }
    }

    fn bold(&self, text: &str) -> String {
        if self.colour {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// The span's columns: column `c` covers `[since + c·span/width, since + (c+1)·span/width)`.
struct Columns {
    since: u64,
    span: u64,
    width: usize,
}

impl Columns {
    fn of(&self, from: u64, to: u64) -> std::ops::Range<usize> {
        let at =
            |t: u64| ((t.saturating_sub(self.since) as u128 * self.width as u128) / self.span.max(1) as u128) as usize;
        let first = at(from).min(self.width);
        let last = at(to.saturating_sub(1).max(from)).min(self.width - 1);
        first..(last + 1).max(first)
    }

    /// The greatest `pick` of the points over each column (`None` where none falls).
    fn peaks(&self, points: &[Point], pick: impl Fn(&Point) -> f64) -> Vec<Option<f64>> {
        let mut columns = vec![None; self.width];
        for p in points {
            for c in self.of(p.t, p.t.saturating_add(u64::from(p.step_ms))) {
                let v = pick(p);
                columns[c] = Some(columns[c].map_or(v, |m: f64| m.max(v)));
            }
        }
        columns
    }
}

fn sparkline(out: &Out, columns: &[Option<f64>], low: f64, high: f64, over: Option<f64>) -> String {
    columns
        .iter()
        .map(|c| match c {
            None => " ".to_owned(),
            Some(v) => {
                let level = if high > low { ((v - low) / (high - low) * 7.0).round().clamp(0.0, 7.0) } else { 0.0 };
                let spark = SPARKS[level as usize].to_string();
                if over.is_some_and(|limit| *v > limit) {
                    out.paint(Status::Warn, &spark)
                } else {
                    spark
                }
            }
        })
        .collect()
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn gib(mib: f64) -> String {
    format!("{:.1}", mib / 1024.0)
}

/// `lo–hi unit`, or one value when they are equal.
fn span_of(lo: &str, hi: &str) -> String {
    if lo == hi {
        lo.to_owned()
    } else {
        format!("{lo}–{hi}")
    }
}

fn label(text: &str) -> String {
    format!("  {text:<LABEL$}")
}

pub fn render(report: &Report, colour: bool, width: usize) -> String {
    let width = width.max(8);
    let mut out = Out { text: String::new(), colour };
    let (from, to) = (LocalTime::at(report.since_ms), LocalTime::at(report.until_ms));
    let to_text = if from.date() == to.date() { to.hm() } else { format!("{} {}", to.date(), to.hm()) };
    let title = out.bold("hpc-health report");
    out.line(format!(
        "{title}  {} {} → {to_text}  ({}, times in {})",
        from.date(),
        from.hm(),
        duration(report.until_ms - report.since_ms),
        from.zone_label()
    ));
    let verdict = &report.verdict;
    let word = out.paint(verdict.status, status_colour(verdict.status).word);
    out.line(format!("{word}  {}", verdict.line));
    for note in &report.notes {
        out.line(format!("note: {note}"));
    }
    if report.skipped_records > 0 {
        out.line(format!("note: {} damaged records skipped", report.skipped_records));
    }
    out.line("");

    let cols = Columns { since: report.since_ms, span: report.until_ms - report.since_ms, width };
    // The time axis: start, middle and end.
    let mid = LocalTime::at(report.since_ms + (report.until_ms - report.since_ms) / 2).hm();
    let mut axis = format!("{}{}", label(""), from.hm());
    let mid_at = LABEL + 2 + width / 2 - mid.len() / 2;
    while axis.chars().count() < mid_at {
        axis.push(' ');
    }
    axis.push_str(&mid);
    let end_at = LABEL + 2 + width - to.hm().len();
    while axis.chars().count() < end_at {
        axis.push(' ');
    }
    axis.push_str(&to.hm());
    out.line(axis);

    // The state band: one character per column, the worst state in it.
    let mut band = vec![None::<Status>; width];
    for span in &report.state_band {
        for c in cols.of(span.from_ms, span.to_ms) {
            let worse = |a: Status, b: Status| {
                // A gap shows over health: a column the service was down in is not all well.
                let rank = |s: Status| match s {
                    Status::Ok => 0,
                    Status::NoData => 1,
                    Status::Warn => 2,
                    Status::Fail => 3,
                };
                if rank(b) > rank(a) {
                    b
                } else {
                    a
                }
            };
            band[c] = Some(band[c].map_or(span.status, |s| worse(s, span.status)));
        }
    }
    let state: String = band
        .iter()
        .map(|s| match s.unwrap_or(Status::NoData) {
            Status::Ok => out.paint(Status::Ok, "─"),
            Status::Warn => out.paint(Status::Warn, "▒"),
            Status::Fail => out.paint(Status::Fail, "█"),
            Status::NoData => " ".to_owned(),
        })
        .collect();
    out.line(format!("{}{state}", label("state")));
    if !report.intake_paused.is_empty() {
        let mut paused = vec![false; width];
        for span in &report.intake_paused {
            cols.of(span.from_ms, span.to_ms).for_each(|c| paused[c] = true);
        }
        let row: String =
            paused.iter().map(|&p| if p { out.paint(Status::Warn, "▀") } else { " ".to_owned() }).collect();
        out.line(format!("{}{row}  {}", label("intake paused"), duration(verdict.intake_paused_ms)));
    }
    let lost_gpus: std::collections::BTreeSet<u8> = verdict.gpus_lost.iter().map(|s| s.index).collect();
    for index in lost_gpus {
        let mut lost = vec![false; width];
        let mut total = 0;
        for span in verdict.gpus_lost.iter().filter(|s| s.index == index) {
            cols.of(span.from_ms, span.to_ms).for_each(|c| lost[c] = true);
            total += span.to_ms - span.from_ms;
        }
        let row: String = lost.iter().map(|&l| if l { out.paint(Status::Fail, "▀") } else { " ".to_owned() }).collect();
        out.line(format!("{}{row}  {}", label(&format!("GPU {index} lost")), duration(total)));
    }
    out.line(format!(
        "{}{} healthy  {} starting/unknown  {} unhealthy  (blank: no record)",
        label(""),
        out.paint(Status::Ok, "─"),
        out.paint(Status::Warn, "▒"),
        out.paint(Status::Fail, "█")
    ));
    out.line("");

    let t = &report.thresholds;
    let total_of = |series: &Series| series.points.iter().map(|p| p.last).fold(0.0, f64::max);
    let host_total = total_of(&report.host.memory_total_mib);
    signal(
        &mut out,
        &cols,
        "host memory",
        &report.host.memory_used_mib,
        |p| p.max,
        (0.0, host_total),
        Some(host_total * t.system_memory),
        |lo, hi| {
            format!(
                "{} GiB of {} GiB (pressure above {:.0} %)",
                span_of(&gib(lo), &gib(hi)),
                gib(host_total),
                t.system_memory * 100.0
            )
        },
    );
    signal(
        &mut out,
        &cols,
        "host PSI some",
        &report.host.psi_some_avg10,
        |p| p.max,
        (0.0, 0.0),
        None,
        |lo, hi| format!("{} % of time stalled (avg10)", span_of(&number(lo), &number(hi))),
    );
    for g in &report.gpus {
        let total = total_of(&g.memory_total_mib);
        let name = |what: &str| format!("GPU {} {what}", g.index);
        signal(
            &mut out,
            &cols,
            &name("memory"),
            &g.memory_used_mib,
            |p| p.max,
            (0.0, total),
            Some(total * t.gpu_memory),
            |lo, hi| {
                format!(
                    "{} GiB of {} GiB (pressure above {:.0} %)",
                    span_of(&gib(lo), &gib(hi)),
                    gib(total),
                    t.gpu_memory * 100.0
                )
            },
        );
        signal(
            &mut out,
            &cols,
            &name("temp"),
            &g.temperature_c,
            |p| p.max,
            (0.0, t.temperature_c),
            Some(t.temperature_c),
            |lo, hi| format!("{} °C (fails at {} °C)", span_of(&number(lo), &number(hi)), number(t.temperature_c)),
        );
        signal(
            &mut out,
            &cols,
            &name("util"),
            &g.utilization_pct,
            |p| p.max,
            (0.0, 100.0),
            None,
            |lo, hi| format!("{} %", span_of(&number(lo), &number(hi))),
        );
        signal(
            &mut out,
            &cols,
            &name("power"),
            &g.power_w,
            |p| p.max,
            (0.0, 0.0),
            None,
            |lo, hi| format!("{} W", span_of(&number(lo), &number(hi))),
        );
    }
    if report.gpus.is_empty() && report.host.memory_used_mib.points.is_empty() {
        out.line(format!("{}(no signals recorded in this span)", label("")));
    }
    out.line("");

    if !report.recoveries.is_empty() {
        out.line(out.bold(&format!("Recoveries ({})", report.recoveries.len())));
        for r in &report.recoveries {
            let status = if r.result == "recovered" {
                Status::Ok
            } else if r.result == "unfinished" {
                Status::Warn
            } else {
                Status::Fail
            };
            let took =
                r.finished_ms.map_or(String::new(), |f| format!(" in {}", duration(f.saturating_sub(r.started_ms))));
            out.line(format!(
                "  {}  {:<7} {}{took}  ({})",
                LocalTime::at(r.started_ms).hms(),
                printable(&r.kind, 40),
                out.paint(status, &printable(&r.result.replace('_', " "), 40)),
                printable(&r.id, 80)
            ));
        }
        out.line("");
    }
    timeline(&mut out, &report.incidents);
    out.text
}

/// One signal's line: label, sparkline, range. Left out when the series has no points.
#[allow(clippy::too_many_arguments)]
fn signal(
    out: &mut Out,
    cols: &Columns,
    name: &str,
    series: &Series,
    pick: impl Fn(&Point) -> f64,
    (low, high): (f64, f64),
    over: Option<f64>,
    range: impl Fn(f64, f64) -> String,
) {
    let Some((lo, hi)) = series.range() else { return };
    let high = if high > low { high.max(hi) } else { hi };
    let columns = cols.peaks(&series.points, pick);
    let line = sparkline(out, &columns, low, high, over);
    out.line(format!("{}{line}  {}", label(name), range(lo, hi)));
}

/// Recorded text as a terminal may show it: no control characters (an escape sequence in a
/// message must not reach the terminal), at most `max` characters.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn timeline(out: &mut Out, incidents: &[IncidentRecord]) {
    let count = |severity: IncidentSeverity| incidents.iter().filter(|i| i.severity == severity).count();
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for i in incidents {
        *counts.entry(i.kind.as_str()).or_default() += 1;
    }
    let mut kinds: Vec<(&str, usize)> = counts.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let by_severity: Vec<String> = IncidentSeverity::ALL
        .iter()
        .rev()
        .filter(|s| count(**s) > 0)
        .map(|s| format!("{} {}", count(*s), s.as_str()))
        .collect();
    let heading = if incidents.is_empty() {
        "Incidents: none".to_owned()
    } else {
        format!("Incidents: {} ({})", incidents.len(), by_severity.join(", "))
    };
    out.line(out.bold(&heading));
    if !kinds.is_empty() {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{} {n}", printable(k, 40))).collect();
        out.line(format!("  by kind: {}", list.join(", ")));
    }
    let listed: Vec<&IncidentRecord> = incidents.iter().filter(|i| !ROUTINE_KINDS.contains(&i.kind.as_str())).collect();
    let mut day = String::new();
    for i in listed.iter().take(MAX_TIMELINE) {
        let at = LocalTime::at(i.timestamp_ms);
        if at.date() != day {
            day = at.date();
            out.line(format!("  {day}"));
        }
        let severity = out.paint(Status::of_severity(i.severity), &format!("{:<8}", i.severity.as_str()));
        let (kind, message) = (printable(&i.kind, 40), printable(&i.message, 120));
        out.line(format!("  {}  {severity} {kind:<26} {message}  #{}", at.hms(), i.seq));
    }
    if listed.len() > MAX_TIMELINE {
        out.line(format!("  … and {} more", listed.len() - MAX_TIMELINE));
    }
    let routine = incidents.len() - listed.len();
    if routine > 0 {
        out.line(format!(
            "  ({routine} routine {} not listed: {})",
            if routine == 1 { "incident" } else { "incidents" },
            ROUTINE_KINDS.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn the_verdict_comes_first_then_signals_then_the_timeline() {
        let report = fixture::report();
        let text = render(&report, false, 48);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("hpc-health report  "), "{text}");
        assert_eq!(lines[1], format!("WARN  {}", report.verdict.line));
        for label in ["host memory", "GPU 0 memory", "GPU 1 memory", "GPU 0 temp", "GPU 1 power"] {
            let line =
                lines.iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label}: {text}"));
            assert!(line.chars().any(|c| SPARKS.contains(&c)), "{line}");
        }
        assert!(text.contains("29.3–70.3 GiB of 80.0 GiB (pressure above 85 %)"), "{text}");
        assert!(text.contains("GPU 1 lost     "), "{text}");
        assert!(text.contains("60–86 °C (fails at 80 °C)"), "{text}");
        assert!(text.contains("Incidents: 13 (2 error, 4 warn, 7 info)"), "{text}");
        assert!(text.contains("by kind: checkpoint_created 5, recovery_finished 2, recovery_started 2, checkpoint_corrupt 1, gpu_issue 1, journal_repaired 1, memory_pressure 1"), "{text}");
        // Routine incidents are counted, not listed.
        assert_eq!(text.matches("#").count(), 8, "{text}");
        assert!(text.contains("(5 routine incidents not listed: checkpoint_created)"), "{text}");
        assert!(!text.contains('\x1b'), "no colour unless asked");
    }

    #[test]
    fn the_state_row_marks_the_unhealthy_minute_and_the_gap() {
        let report = fixture::report();
        let text = render(&report, false, 36);
        let state = text.lines().find(|l| l.trim_start().starts_with("state")).unwrap();
        let row: Vec<char> = state.chars().skip(2 + LABEL).collect();
        assert_eq!(row.len(), 36);
        // 360 buckets over 36 columns: bucket b falls in column b / 10.
        assert_eq!(row[10], '█', "{state}");
        assert_eq!(row[0], '─');
        assert_eq!(row[33], ' ', "the service was down: {state}");
    }

    /// `text` without the SGR sequences this renderer writes (`ESC [ n m`, n in the palette, 1, 0).
    fn regex_free_sgr_strip(text: &str) -> String {
        let mut out = text.to_owned();
        for code in ["0", "1", "31", "32", "33", "90"] {
            out = out.replace(&format!("\x1b[{code}m"), "");
        }
        out
    }

    #[test]
    fn a_gpu_lost_twice_has_one_row() {
        let mut report = fixture::report();
        let mut again = report.verdict.gpus_lost[0].clone();
        again.from_ms += 1_000_000;
        again.to_ms += 1_000_000;
        let other = super::super::model::GpuLostSpan { index: 0, ..again.clone() };
        report.verdict.gpus_lost = vec![report.verdict.gpus_lost[0].clone(), other, again];
        let text = render(&report, false, 48);
        assert_eq!(text.matches("GPU 1 lost  ").count(), 1, "{text}");
        assert_eq!(text.matches("GPU 0 lost  ").count(), 1, "{text}");
    }

    #[test]
    fn colour_is_added_not_relied_on_and_messages_cannot_drive_the_terminal() {
        let mut report = fixture::report();
        let hostile = "pwned \x1b]52;c;aGk=\x07 \x1b[2J\x1b[31m";
        report.incidents[3].message = hostile.to_owned();
        report.incidents[3].kind = format!("kind{hostile}");
        report.recoveries[0].id = hostile.to_owned();
        report.recoveries[0].kind = hostile.to_owned();
        report.recoveries[0].result = hostile.to_owned();
        let text = render(&report, true, 48);
        assert!(text.contains("\x1b[33mWARN\x1b[0m"), "{text}");
        // Our own colours only: SGR codes from the palette, bold and reset.
        let ours = regex_free_sgr_strip(&text);
        assert!(!ours.contains('\x1b') && !text.contains('\x07'), "only our own escapes: {text:?}");
        assert!(!text.contains("\x1b[2J") && !text.contains("\x1b]52"), "{text:?}");
    }
}
