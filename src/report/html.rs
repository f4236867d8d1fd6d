//! The report as one self-contained HTML page: the verdict, charts drawn here as inline SVG
//! (state band with incident and recovery markers, GPU and host memory, temperature,
//! utilisation, power), and the incident timeline. Nothing is fetched: one inline style,
//! one small inline script (the details panel; the page reads without it, hover titles
//! are SVG `<title>`s), and the incidents' details as an escaped JSON block.
//!
//! The names the page's tests and the browser test use: `svg.chart[data-chart]` (`state`,
//! `gpu-memory`, `host-memory`, `temperature`, `utilization`, `power`);
//! `path.series[data-series]` (`GPU <i>`, `host`); `path.band`; `line.threshold`;
//! `g.marker[data-seq][data-kind][data-severity]`; `g.recovery[data-id][data-seq]`;
//! `rect.state[data-state]`; `rect.paused`; `#detail` (the panel); `tr#incident-<seq>`;
//! `script#incidents` (JSON); `.selected` on the chosen marker and row.

use std::borrow::Cow;
use std::fmt::Write;

use super::clock::{duration, LocalTime};
use super::model::{Point, Report, Series, Status};
use super::palette::{status_colour, SERIES};
use super::svg::{num, shows_dates, time_ticks, value_ticks, Plot, TimeTick, VIEW_WIDTH};
use crate::durable::IncidentRecord;
use crate::incident::IncidentSeverity;

/// Incidents drawn at most (markers, rows, details): the warnings and errors first, then the
/// routine ones; the rest are counted in a note (`hpc-health incidents` lists every one).
pub const MAX_INCIDENTS_DRAWN: usize = 5_000;
/// Characters of an incident's message or kind a page shows; details are cut past
/// `MAX_DETAILS_BYTES` of JSON. A log's text is the writer's: this keeps a page of many long
/// incidents within a few MiB.
pub const MAX_TEXT_CHARS: usize = 1_000;
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// `text` cut to `MAX_TEXT_CHARS` characters (an ellipsis says it was).
fn clipped(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
        None => Cow::Borrowed(text),
    }
}

/// An incident's details for the panel, or what they were when too large to carry.
fn details_shown(details: &serde_json::Value) -> serde_json::Value {
    let bytes = serde_json::to_string(details).map_or(0, |t| t.len());
    if bytes <= MAX_DETAILS_BYTES {
        details.clone()
    } else {
        serde_json::Value::String(format!("({bytes} bytes of details: hpc-health incidents shows them whole)"))
    }
}

/// The incidents a page draws, oldest first (see [`MAX_INCIDENTS_DRAWN`]).
fn drawn(report: &Report) -> Vec<&IncidentRecord> {
    let mut chosen: Vec<&IncidentRecord> = report.incidents.iter().collect();
    if chosen.len() > MAX_INCIDENTS_DRAWN {
        chosen.sort_by_key(|i| std::cmp::Reverse((i.severity, i.timestamp_ms)));
        chosen.truncate(MAX_INCIDENTS_DRAWN);
        chosen.sort_by_key(|i| (i.timestamp_ms, i.seq));
    }
    chosen
}

/// Every chart's plot rectangle, in `viewBox` units (left leaves room for value labels,
/// top for the axis titles, bottom for two rows of time labels).
const LEFT: f64 = 64.0;
const RIGHT: f64 = VIEW_WIDTH - 16.0;
const TOP: f64 = 40.0;
const BOTTOM_MARGIN: f64 = 70.0;
const LINE_CHART_HEIGHT: f64 = 280.0;
/// A time label this close to the plot's right edge ends there instead of centring on
/// its tick (so it is not cut off).
const TICK_LABEL_HALF: f64 = 24.0;

/// The state chart's rows, top to bottom.
const MARKER_Y: f64 = TOP + 10.0;
const BAND_TOP: f64 = TOP + 26.0;
const BAND_HEIGHT: f64 = 40.0;
const PAUSED_TOP: f64 = BAND_TOP + BAND_HEIGHT + 6.0;
const PAUSED_HEIGHT: f64 = 10.0;
const RECOVERY_TOP: f64 = PAUSED_TOP + PAUSED_HEIGHT + 6.0;
const RECOVERY_HEIGHT: f64 = 14.0;
const STATE_BOTTOM: f64 = RECOVERY_TOP + RECOVERY_HEIGHT + 6.0;

const STATUSES: [Status; 4] = [Status::Ok, Status::Warn, Status::Fail, Status::NoData];

/// Text or an attribute value as HTML: `&`, `<`, `>`, both quotes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// JSON safe inside a `<script>` element: no `<` (so no `</script>` or `<!--`), `>` or
/// `&`, and no line separators, all as `\u` escapes JSON reads back the same.
fn script_json(value: &serde_json::Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned());
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn status_class(status: Status) -> String {
    format!("st-{}", status.as_str())
}

fn recovery_status(result: &str) -> Status {
    match result {
        "recovered" => Status::Ok,
        "unfinished" => Status::Warn,
        _ => Status::Fail,
    }
}

/// A span of time as a reader wants it: `06:10:00–06:12:30 (2 min)`.
fn time_span(from_ms: u64, to_ms: u64) -> String {
    format!(
        "{}–{} ({})",
        LocalTime::at(from_ms).hms(),
        LocalTime::at(to_ms).hms(),
        duration(to_ms.saturating_sub(from_ms))
    )
}

/// The page for `report`. Deterministic for a report and a `TZ`.
pub fn render(report: &Report) -> String {
    let since = LocalTime::at(report.since_ms);
    let until = LocalTime::at(report.until_ms);
    let zone = if since.zone_label() == until.zone_label() {
        until.zone_label()
    } else {
        format!("{}, then {}", since.zone_label(), until.zone_label())
    };
    let ticks = time_ticks(report.since_ms, report.until_ms);
    let long_span = shows_dates(report.since_ms, report.until_ms);
    let zone_short = if until.zone.is_empty() { until.offset() } else { until.zone.clone() };
    let axes = Axes {
        since_ms: report.since_ms,
        until_ms: report.until_ms,
        ticks: &ticks,
        zone: &zone_short,
        events: drawn(report)
            .into_iter()
            .filter(|i| i.severity > IncidentSeverity::Info)
            .map(|i| (i.timestamp_ms, Status::of_severity(i.severity)))
            .collect(),
        lost: report
            .verdict
            .gpus_lost
            .iter()
            .map(|l| {
                let to = if l.back { l.to_ms } else { report.until_ms.max(l.to_ms) };
                (l.from_ms, to, format!("GPU {} lost: {}", l.index, time_span(l.from_ms, to)))
            })
            .collect(),
    };

    let mut page = String::with_capacity(256 * 1024);
    let title = format!("hpc-health report: {} {} → {} {}", since.date(), since.hm(), until.date(), until.hm());
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        escape(&title),
        style()
    );

    // Header: title, span, zone, verdict, notes.
    let verdict = status_colour(report.verdict.status);
    let _ = write!(
        page,
        "<header>\n<h1>hpc-health report</h1>\n<p class=\"span\"><time>{} {}</time> → <time>{} {}</time> \
         <span class=\"muted\">({}) · times in {}</span></p>\n\
         <p class=\"verdict\" data-status=\"{}\"><strong class=\"{}\">{}</strong> {}</p>\n",
        since.date(),
        since.hm(),
        until.date(),
        until.hm(),
        duration(report.until_ms.saturating_sub(report.since_ms)),
        escape(&zone),
        report.verdict.status.as_str(),
        status_class(report.verdict.status),
        verdict.word,
        escape(&report.verdict.line)
    );
    let mut notes: Vec<String> = report.notes.clone();
    if report.skipped_records > 0 {
        notes.push(format!("{} damaged history records or incident lines skipped", report.skipped_records));
    }
    if !notes.is_empty() {
        page.push_str("<ul class=\"notes\">");
        for note in &notes {
            let _ = write!(page, "<li>{}</li>", escape(note));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</header>\n");

    state_chart(&mut page, report, &axes);
    page.push_str(
        "<section id=\"detail\" class=\"panel\" aria-live=\"polite\"><p class=\"muted\">Select a marker on the \
         state chart (click it, or Tab to it and press Enter) to see the incident's details here; every incident \
         is also in the timeline below.</p></section>\n",
    );
    for chart in line_charts(report) {
        line_chart(&mut page, &chart, &axes);
    }
    timeline(&mut page, report, long_span);

    let incidents: Vec<serde_json::Value> = drawn(report)
        .into_iter()
        .map(|i| {
            serde_json::json!({
                "seq": i.seq,
                "time": LocalTime::at(i.timestamp_ms).full(),
                "severity": i.severity.as_str(),
                "status": Status::of_severity(i.severity).as_str(),
                "kind": clipped(&i.kind),
                "message": clipped(&i.message),
                "details": details_shown(&i.details),
            })
        })
        .collect();
    let _ = write!(
        page,
        "<script type=\"application/json\" id=\"incidents\">{}</script>\n<script>{}</script>\n</main>\n</body>\n</html>\n",
        script_json(&serde_json::Value::Array(incidents)),
        SCRIPT
    );
    page
}

/// What every chart shares: the time scale and its ticks, and what is drawn behind every
/// line chart so it lines up with the state chart: a faint line per warn or error
/// incident, and a faint span per GPU loss.
struct Axes<'a> {
    since_ms: u64,
    until_ms: u64,
    ticks: &'a [TimeTick],
    zone: &'a str,
    events: Vec<(u64, Status)>,
    lost: Vec<(u64, u64, String)>,
}

impl Axes<'_> {
    fn plot(&self, top: f64, bottom: f64, lo: f64, hi: f64) -> Plot {
        Plot { left: LEFT, right: RIGHT, top, bottom, since_ms: self.since_ms, until_ms: self.until_ms, lo, hi }
    }

    /// The time grid, tick labels (every other one `alt`, hidden on a narrow screen) and the
    /// axis title with the zone.
    fn time_axis(&self, out: &mut String, plot: &Plot) {
        for (i, tick) in self.ticks.iter().enumerate() {
            let at = plot.x(tick.t_ms as f64);
            let x = num(at);
            let _ = write!(
                out,
                "<g class=\"tick{}\"><line class=\"grid\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>\
                 <text x=\"{x}\" y=\"{}\" dy=\"1em\" text-anchor=\"{}\">{}",
                if i % 2 == 1 { " alt" } else { "" },
                num(plot.top),
                num(plot.bottom),
                num(plot.bottom + 6.0),
                if at > RIGHT - TICK_LABEL_HALF { "end" } else { "middle" },
                tick.time
            );
            if let Some(date) = &tick.date {
                let _ = write!(out, "<tspan x=\"{x}\" dy=\"1.15em\">{date}</tspan>");
            }
            out.push_str("</text></g>");
        }
        let _ = write!(
            out,
            "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"end\">time ({})</text>",
            num(RIGHT),
            num(TOP - 12.0),
            escape(self.zone)
        );
    }
}

/// A chart's `<svg>`; `role` is `img`, or `group` where it holds markers to focus.
fn svg_open(out: &mut String, key: &str, height: f64, role: &str, label: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{key}\" viewBox=\"0 0 {} {}\" role=\"{role}\" aria-label=\"{}\">",
        num(VIEW_WIDTH),
        num(height),
        escape(label)
    );
}

/// The health state band, intake pauses below it, recoveries below those, and a marker per
/// incident above it.
fn state_chart(out: &mut String, report: &Report, axes: &Axes<'_>) {
    let plot = axes.plot(BAND_TOP, STATE_BOTTOM, 0.0, 1.0);
    out.push_str("<figure>\n<figcaption><strong>Health state</strong> <span class=\"muted\">band: the worst state in each \
         bucket; thin band: intake paused; bars: recoveries; markers: incidents (bigger for warn and error)</span></figcaption>\n");
    svg_open(
        out,
        "state",
        STATE_BOTTOM + BOTTOM_MARGIN,
        "group",
        "Health state, intake pauses, recoveries and incidents over time",
    );
    axes.time_axis(out, &plot);
    let _ =
        write!(out, "<path class=\"axis\" d=\"M{l} {b}H{r}\"/>", l = num(LEFT), r = num(RIGHT), b = num(STATE_BOTTOM));
    let width = |from: u64, to: u64| (plot.x(to as f64) - plot.x(from as f64)).max(0.5);
    for span in &report.state_band {
        let _ = write!(
            out,
            "<rect class=\"state {}\" data-state=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">\
             <title>{}: {}</title></rect>",
            status_class(span.status),
            span.state,
            num(plot.x(span.from_ms as f64)),
            num(BAND_TOP),
            num(width(span.from_ms, span.to_ms)),
            num(BAND_HEIGHT),
            span.state.replace('_', " "),
            time_span(span.from_ms, span.to_ms)
        );
    }
    for span in &report.intake_paused {
        let _ = write!(
            out,
            "<rect class=\"paused {}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>intake paused: {}</title></rect>",
            status_class(Status::Warn),
            num(plot.x(span.from_ms as f64)),
            num(PAUSED_TOP),
            num(width(span.from_ms, span.to_ms)),
            num(PAUSED_HEIGHT),
            time_span(span.from_ms, span.to_ms)
        );
    }
    for run in &report.recoveries {
        let to = run.finished_ms.unwrap_or(report.until_ms).max(run.started_ms);
        let when = match run.finished_ms {
            Some(finished) => time_span(run.started_ms, finished),
            None => format!("since {}", LocalTime::at(run.started_ms).hms()),
        };
        let _ = write!(
            out,
            "<g class=\"recovery {}\" data-id=\"{}\" data-type=\"{}\" data-result=\"{}\" data-seq=\"{}\" \
             tabindex=\"0\" role=\"button\"><title>recovery {} ({}): {}, {}</title>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\"/></g>",
            status_class(recovery_status(&run.result)),
            escape(&run.id),
            escape(&run.kind),
            escape(&run.result),
            run.seqs.first().copied().unwrap_or_default(),
            escape(&run.id),
            escape(&run.kind),
            escape(&run.result.replace('_', " ")),
            when,
            num(plot.x(run.started_ms as f64)),
            num(RECOVERY_TOP),
            num(width(run.started_ms, to).max(3.0)),
            num(RECOVERY_HEIGHT)
        );
    }
    // Info markers first and thin, so many of them stay a row of ticks under the warnings.
    let mut incidents = drawn(report);
    incidents.sort_by_key(|i| (i.severity > IncidentSeverity::Info, i.timestamp_ms, i.seq));
    for i in incidents {
        let x = num(plot.x(i.timestamp_ms as f64));
        let _ = write!(
            out,
            "<g class=\"marker {}\" data-seq=\"{}\" data-kind=\"{}\" data-severity=\"{}\" tabindex=\"0\" role=\"button\">\
             <title>{} {} {}: {}</title>",
            status_class(Status::of_severity(i.severity)),
            i.seq,
            escape(&clipped(&i.kind)),
            i.severity.as_str(),
            LocalTime::at(i.timestamp_ms).hms(),
            i.severity.as_str().to_uppercase(),
            escape(&clipped(&i.kind)),
            escape(&clipped(&i.message))
        );
        if i.severity == IncidentSeverity::Info {
            let _ = write!(
                out,
                "<rect class=\"hit\" x=\"{}\" y=\"{}\" width=\"6\" height=\"{}\"/>\
                 <line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>",
                num(plot.x(i.timestamp_ms as f64) - 3.0),
                num(MARKER_Y - 8.0),
                num(BAND_TOP - MARKER_Y + 8.0),
                num(MARKER_Y),
                num(BAND_TOP - 2.0)
            );
        } else {
            let radius = if i.severity == IncidentSeverity::Warn { 6.0 } else { 8.0 };
            let _ = write!(
                out,
                "<line class=\"stem\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/><circle cx=\"{x}\" cy=\"{}\" r=\"{}\"/>",
                num(MARKER_Y),
                num(STATE_BOTTOM),
                num(MARKER_Y),
                num(radius)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>\n<ul class=\"legend\">");
    for (state, status) in [
        ("healthy", Status::Ok),
        ("starting / unknown", Status::Warn),
        ("unhealthy", Status::Fail),
        ("no data", Status::NoData),
    ] {
        let _ = write!(out, "<li><span class=\"sw {}\"></span>{state}</li>", status_class(status));
    }
    let _ = write!(
        out,
        "<li><span class=\"sw thin {}\"></span>intake paused</li><li><span class=\"sw {}\"></span>recovery \
         (green: recovered, amber: unfinished, red: not recovered)</li><li><span class=\"dot {}\"></span>info</li>\
         <li><span class=\"dot {}\"></span>warn</li><li><span class=\"dot {}\"></span>error</li></ul>\n</figure>\n",
        status_class(Status::Warn),
        status_class(Status::Ok),
        status_class(Status::Ok),
        status_class(Status::Warn),
        status_class(Status::Fail)
    );
}

/// One line chart: its series (already in the chart's unit), its value range before
/// rounding to ticks, and its threshold.
struct LineChart<'a> {
    key: &'static str,
    title: &'static str,
    /// The y axis title (the unit).
    unit: &'static str,
    lo: f64,
    hi: f64,
    series: Vec<(String, &'static str, Cow<'a, [Point]>)>,
    threshold: Option<f64>,
    /// A chart of GPU signals: GPU losses are shaded on it.
    per_gpu: bool,
}

fn gpu_colour(index: u8) -> &'static str {
    SERIES[index as usize % SERIES.len()]
}

/// `used` as a percentage of `total` (the latest total known at each point).
fn percent_of_total(used: &Series, total: &Series) -> Vec<Point> {
    let mut totals = total.points.iter().peekable();
    let mut current: Option<f64> = None;
    let mut out = Vec::with_capacity(used.points.len());
    for p in &used.points {
        while let Some(t) = totals.next_if(|t| t.t <= p.t) {
            current = Some(t.last);
        }
        let Some(total) = current.filter(|t| *t > 0.0) else { continue };
        let pct = |v: f64| v / total * 100.0;
        out.push(Point { t: p.t, step_ms: p.step_ms, min: pct(p.min), max: pct(p.max), last: pct(p.last) });
    }
    out
}

fn scaled(points: &[Point], factor: f64) -> Vec<Point> {
    points.iter().map(|p| Point { min: p.min * factor, max: p.max * factor, last: p.last * factor, ..*p }).collect()
}

fn peak(series: &[(String, &'static str, Cow<'_, [Point]>)]) -> f64 {
    series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.max)).fold(0.0, f64::max)
}

fn line_charts(report: &Report) -> Vec<LineChart<'_>> {
    let mut charts = Vec::new();

    let memory: Vec<_> = report
        .gpus
        .iter()
        .map(|g| {
            (
                format!("GPU {}", g.index),
                gpu_colour(g.index),
                Cow::<[Point]>::Owned(percent_of_total(&g.memory_used_mib, &g.memory_total_mib)),
            )
        })
        // A GPU only ever seen lost has no line.
        .filter(|(_, _, points)| !points.is_empty())
        .collect();
    charts.push(LineChart {
        key: "gpu-memory",
        title: "GPU memory used, % of each GPU's memory",
        unit: "%",
        lo: 0.0,
        hi: 100.0,
        series: memory,
        threshold: Some(report.thresholds.gpu_memory * 100.0),
        per_gpu: true,
    });

    let host_total_gib = report.host.memory_total_mib.points.iter().map(|p| p.last).fold(0.0, f64::max) / 1024.0;
    let host: Vec<_> = if report.host.memory_used_mib.points.is_empty() {
        Vec::new()
    } else {
        vec![("host".to_owned(), SERIES[0], Cow::Owned(scaled(&report.host.memory_used_mib.points, 1.0 / 1024.0)))]
    };
    let host_peak = peak(&host);
    charts.push(LineChart {
        key: "host-memory",
        title: "Host memory used (host or cgroup, whichever binds)",
        unit: "GiB",
        lo: 0.0,
        hi: host_total_gib.max(host_peak).max(1.0),
        series: host,
        threshold: (host_total_gib > 0.0).then_some(report.thresholds.system_memory * host_total_gib),
        per_gpu: false,
    });

    let gpu_series = |pick: fn(&super::model::GpuSeries) -> &Series| -> Vec<(String, &'static str, Cow<'_, [Point]>)> {
        report
            .gpus
            .iter()
            .filter(|g| !pick(g).points.is_empty())
            .map(|g| (format!("GPU {}", g.index), gpu_colour(g.index), Cow::Borrowed(pick(g).points.as_slice())))
            .collect()
    };
    let temperature = gpu_series(|g| &g.temperature_c);
    let temperature_peak = peak(&temperature);
    charts.push(LineChart {
        key: "temperature",
        title: "GPU temperature",
        unit: "°C",
        lo: 0.0,
        hi: temperature_peak.max(report.thresholds.temperature_c) * 1.05,
        series: temperature,
        threshold: Some(report.thresholds.temperature_c),
        per_gpu: true,
    });
    charts.push(LineChart {
        key: "utilization",
        title: "GPU utilisation",
        unit: "%",
        lo: 0.0,
        hi: 100.0,
        series: gpu_series(|g| &g.utilization_pct),
        threshold: None,
        per_gpu: true,
    });
    let power = gpu_series(|g| &g.power_w);
    let power_peak = peak(&power);
    charts.push(LineChart {
        key: "power",
        title: "GPU power draw",
        unit: "W",
        lo: 0.0,
        hi: (power_peak * 1.05).max(1.0),
        series: power,
        threshold: None,
        per_gpu: true,
    });
    charts
}

/// `10 s`, or `10 s to 5 min` where the history's tiers mix.
fn bucket_words(series: &[(String, &'static str, Cow<'_, [Point]>)]) -> Option<String> {
    let steps = series.iter().flat_map(|(_, _, points)| points.iter().map(|p| u64::from(p.step_ms)));
    let (lo, hi) = steps.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    (hi > 0).then(|| if lo == hi { duration(lo) } else { format!("{} to {}", duration(lo), duration(hi)) })
}

fn line_chart(out: &mut String, chart: &LineChart<'_>, axes: &Axes<'_>) {
    let bottom = LINE_CHART_HEIGHT - BOTTOM_MARGIN;
    let ticks = value_ticks(chart.lo, chart.hi);
    let (lo, hi) = (ticks[0], ticks[ticks.len() - 1]);
    let plot = axes.plot(TOP, bottom, lo, hi);
    let caption = match bucket_words(&chart.series) {
        Some(step) => format!("line: peak per {step}; faint band: lowest to highest per bucket; y: {}", chart.unit),
        None => format!("no data; y: {}", chart.unit),
    };
    let _ = write!(
        out,
        "<figure>\n<figcaption><strong>{}</strong> <span class=\"muted\">{}</span></figcaption>\n",
        chart.title,
        escape(&caption)
    );
    svg_open(out, chart.key, LINE_CHART_HEIGHT, "img", &format!("{} ({})", chart.title, chart.unit));
    for value in &ticks {
        let y = num(plot.y(*value));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/><text x=\"{}\" y=\"{y}\" dy=\".35em\" \
             text-anchor=\"end\">{}</text>",
            num(LEFT),
            num(RIGHT),
            num(LEFT - 8.0),
            num(*value)
        );
    }
    let _ =
        write!(out, "<text class=\"axis-title\" x=\"{}\" y=\"{}\">{}</text>", num(4.0), num(TOP - 12.0), chart.unit);
    axes.time_axis(out, &plot);
    let _ = write!(
        out,
        "<path class=\"axis\" d=\"M{l} {t}V{b}H{r}\"/>",
        l = num(LEFT),
        t = num(TOP),
        b = num(bottom),
        r = num(RIGHT)
    );
    if chart.per_gpu {
        for (from, to, title) in &axes.lost {
            let x = plot.x(*from as f64);
            let _ = write!(
                out,
                "<rect class=\"lost {}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                status_class(Status::Fail),
                num(x),
                num(TOP),
                num((plot.x(*to as f64) - x).max(1.0)),
                num(bottom - TOP),
                escape(title)
            );
        }
    }
    for (t, status) in &axes.events {
        let x = num(plot.x(*t as f64));
        let _ = write!(
            out,
            "<line class=\"event {}\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>",
            status_class(*status),
            num(TOP),
            num(bottom)
        );
    }
    let mut lines = String::new();
    for (name, colour, points) in &chart.series {
        let (line, band) = plot.series_paths(points);
        if !band.is_empty() {
            let _ =
                write!(out, "<path class=\"band\" data-series=\"{}\" fill=\"{colour}\" d=\"{band}\"/>", escape(name));
        }
        let range =
            points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.min), hi.max(p.max)));
        let _ = write!(
            lines,
            "<path class=\"series\" data-series=\"{}\" stroke=\"{colour}\" d=\"{line}\"><title>{}: {} to {} {}</title></path>",
            escape(name),
            escape(name),
            num(range.0),
            num(range.1),
            chart.unit
        );
    }
    out.push_str(&lines);
    if let Some(threshold) = chart.threshold {
        let y = num(plot.y(threshold));
        let _ = write!(
            out,
            "<line class=\"threshold\" data-value=\"{v}\" x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"threshold-label\" x=\"{}\" y=\"{y}\" dy=\"-.35em\" text-anchor=\"end\">threshold {v} {}</text>",
            num(LEFT),
            num(RIGHT),
            num(RIGHT - 4.0),
            chart.unit,
            v = num(threshold)
        );
    }
    if chart.series.is_empty() {
        let _ = write!(
            out,
            "<text class=\"nodata\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>",
            num((LEFT + RIGHT) / 2.0),
            num((TOP + bottom) / 2.0)
        );
    }
    out.push_str("</svg>\n<ul class=\"legend\">");
    for (name, colour, _) in &chart.series {
        let _ = write!(out, "<li><span class=\"sw line\" style=\"background:{colour}\"></span>{}</li>", escape(name));
    }
    if let Some(threshold) = chart.threshold {
        let _ = write!(out, "<li><span class=\"sw dash\"></span>threshold {} {}</li>", num(threshold), chart.unit);
    }
    if !axes.events.is_empty() {
        out.push_str("<li><span class=\"sw vline st-warn\"></span>warn or error incident</li>");
    }
    if chart.per_gpu && !axes.lost.is_empty() {
        let _ = write!(out, "<li><span class=\"sw lost {}\"></span>GPU lost</li>", status_class(Status::Fail));
    }
    out.push_str("</ul>\n</figure>\n");
}

/// The incident timeline: a row per incident, `id="incident-<seq>"`.
fn timeline(out: &mut String, report: &Report, long_span: bool) {
    let _ = write!(out, "<section class=\"timeline\">\n<h2>Incidents ({})</h2>\n", report.incidents.len());
    if report.incidents.is_empty() {
        out.push_str("<p class=\"muted\">No incidents in this span.</p>\n</section>\n");
        return;
    }
    let shown = drawn(report);
    if shown.len() < report.incidents.len() {
        let _ = writeln!(
            out,
            "<p class=\"muted\">The {} most serious and recent are drawn; {} more are not (<code>hpc-health incidents</code> lists every one).</p>",
            shown.len(),
            report.incidents.len() - shown.len()
        );
    }
    out.push_str(
        "<div class=\"table-wrap\"><table>\n<thead><tr><th>Time</th><th>Severity</th><th>Kind</th><th>Message</th></tr></thead>\n<tbody>\n",
    );
    for i in shown {
        let at = LocalTime::at(i.timestamp_ms);
        let when = if long_span { format!("{} {}", at.date(), at.hms()) } else { at.hms() };
        let _ = writeln!(
            out,
            "<tr id=\"incident-{seq}\" data-seq=\"{seq}\"><td><time>{when}</time></td><td><span class=\"sev {}\">\
             <span class=\"dot\"></span>{}</span></td><td>{}</td><td class=\"msg\">{}</td></tr>",
            status_class(Status::of_severity(i.severity)),
            i.severity.as_str().to_uppercase(),
            escape(&clipped(&i.kind)),
            escape(&clipped(&i.message)),
            seq = i.seq
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// The page's style: the status colours from `palette` for light and dark.
fn style() -> String {
    let mut light = String::new();
    let mut dark = String::new();
    let mut classes = String::new();
    for status in STATUSES {
        let c = status_colour(status);
        let name = status.as_str();
        let _ = write!(light, "--{name}:{};", c.light);
        let _ = write!(dark, "--{name}:{};", c.dark);
        let _ = write!(
            classes,
            ".st-{name}{{color:var(--{name})}}.verdict[data-status={name}]{{border-color:var(--{name});\
             background:color-mix(in srgb,var(--{name}) 10%,transparent)}}"
        );
    }
    format!(
        ":root{{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--grid:#d8dee4;--panel:#f6f8fa;{light}}}\
         @media (prefers-color-scheme:dark){{:root{{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--grid:#30363d;--panel:#161b22;{dark}}}}}\
         {classes}{STYLE}"
    )
}

const STYLE: &str = "*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:1100px;margin:0 auto;padding:12px}\
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}\
.muted{color:var(--muted)}.span{margin:.2em 0}\
.verdict{border:2px solid;border-left-width:8px;border-radius:6px;padding:8px 12px;margin:10px 0;font-size:1.05em}\
.notes{margin:4px 0;padding-left:1.2em;color:var(--muted)}\
figure{margin:18px 0 8px}figcaption{margin-bottom:4px}\
svg.chart{display:block;width:100%;height:auto}\
svg.chart text{font-size:14px;fill:var(--muted)}\
svg.chart text.axis-title{fill:var(--fg)}svg.chart text.nodata{font-size:20px}\
.grid{stroke:var(--grid);stroke-width:1}.axis{stroke:var(--muted);fill:none}\
path.series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}\
path.band{opacity:.16;stroke:none}\
line.threshold{stroke:var(--warn);stroke-width:1.5;stroke-dasharray:7 5}\
svg.chart text.threshold-label{fill:var(--warn)}\
rect.state,rect.paused,.recovery rect,.marker circle{fill:currentColor}\
.marker line{stroke:currentColor;stroke-width:1.5}.marker .stem{opacity:.6}\
.marker .hit{fill:transparent}.marker,.recovery{cursor:pointer;outline:none}\
.marker:focus circle,.marker.selected circle,.recovery:focus rect,.recovery.selected rect{stroke:var(--fg);stroke-width:3}\
.marker:focus line,.marker.selected line{stroke-width:3;opacity:1}\
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:2px 14px;font-size:.9em}\
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px;background:currentColor}\
.sw.thin{height:5px;vertical-align:2px}.sw.vline{width:2px;opacity:.6}.sw.lost{opacity:.18}\
line.event{stroke:currentColor;stroke-width:1;opacity:.45}rect.lost{fill:currentColor;opacity:.1}.sw.line{height:3px;vertical-align:3px}\
.sw.dash{height:0;border-top:2px dashed var(--warn);background:none;vertical-align:4px}\
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px;background:currentColor}\
.panel{background:var(--panel);border-radius:6px;padding:8px 12px;margin:8px 0;min-height:3em}\
.panel h3{margin:.2em 0;font-size:1em}.panel dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.4em 0}\
.panel dt{color:var(--muted)}.panel dd{margin:0;overflow-wrap:anywhere}\
.panel pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.4em 0;font-size:.9em}\
.table-wrap{overflow-x:auto}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--grid);vertical-align:top}\
td.msg{overflow-wrap:anywhere}.sev{font-weight:600;white-space:nowrap}\
tr.selected{background:color-mix(in srgb,var(--warn) 20%,transparent)}\
@media (max-width:600px){body{font-size:14px}main{padding:8px}svg.chart text{font-size:28px}\
svg.chart text.nodata{font-size:32px}.tick.alt text{display:none}\
.marker[data-severity=warn] circle{r:11px}.marker[data-severity=error] circle,.marker[data-severity=critical] circle{r:14px}\
.marker .hit{width:14px;transform:translateX(-4px)}\
table,tbody,tr,td{display:block}thead{display:none}tr{padding:6px 0;border-bottom:1px solid var(--grid)}\
td{border:0;padding:1px 4px;display:inline-block}td.msg{display:block}}";

/// The details panel: a marker's click (or Enter / Space on it) shows its incident from the
/// JSON block, built with text nodes only, and selects its timeline row.
const SCRIPT: &str = r#"(function () {
  var block = document.getElementById('incidents');
  var panel = document.getElementById('detail');
  if (!block || !panel) return;
  var bySeq = {};
  JSON.parse(block.textContent).forEach(function (i) { bySeq[i.seq] = i; });
  function add(parent, tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    parent.appendChild(e);
    return e;
  }
  function show(el) {
    var seq = el.getAttribute('data-seq');
    var i = bySeq[seq];
    panel.textContent = '';
    if (el.getAttribute('data-id') !== null) {
      add(panel, 'h3', 'Recovery ' + el.getAttribute('data-id') + ' (' + el.getAttribute('data-type') + '): ' +
        el.getAttribute('data-result'));
    }
    var old = document.querySelectorAll('.selected');
    for (var k = 0; k < old.length; k++) old[k].classList.remove('selected');
    el.classList.add('selected');
    if (!i) return;
    add(panel, 'h3', i.severity.toUpperCase() + ' ' + i.kind, 'st-' + i.status);
    var dl = add(panel, 'dl');
    [['Time', i.time], ['Severity', i.severity], ['Kind', i.kind], ['Message', i.message], ['Seq', String(i.seq)]]
      .forEach(function (r) { add(dl, 'dt', r[0]); add(dl, 'dd', r[1]); });
    add(panel, 'pre', JSON.stringify(i.details, null, 2));
    var row = document.getElementById('incident-' + seq);
    if (row) {
      row.classList.add('selected');
      row.scrollIntoView({ block: 'nearest' });
    }
  }
  function marker(e) {
    return e.target && e.target.closest ? e.target.closest('.marker, .recovery') : null;
  }
  document.addEventListener('click', function (e) {
    var m = marker(e);
    if (m) show(m);
  });
  document.addEventListener('keydown', function (e) {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    var m = marker(e);
    if (m) { e.preventDefault(); show(m); }
  });
})();"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::{GpuSignal, HostSignal, FLAG_GPU_LOST, FLAG_INTAKE_CLOSED};
    use crate::history::{HealthState, HistoryReadout, Record, Source};
    use crate::report::model::{self, ReportInput, ReportThresholds};
    use serde_json::json;

    const SINCE: u64 = 1_764_640_800_000;
    const STEP: u32 = 10_000;
    const HOSTILE: &str = "</script><script>alert(1)</script><!-- & \"quoted\" 'single' <b>bold</b>";

    fn incident(
        seq: u64,
        at_s: u64,
        kind: &str,
        severity: IncidentSeverity,
        message: &str,
        details: serde_json::Value,
    ) -> IncidentRecord {
        crate::report::fixture::record(seq, SINCE + at_s * 1000, kind, severity, message, details)
    }

    /// Two hours: host and 2 GPUs every 10 s, nothing recorded from 40 to 50 min (a gap),
    /// unhealthy and intake closed from 30 to 35 min; GPU 1 lost from 55 to 58 min.
    fn history(gpus: u8, buckets: u64, with_host: bool) -> HistoryReadout {
        let mut records = Vec::new();
        for b in 0..buckets {
            let minute = b * u64::from(STEP) / 60_000;
            if (40..50).contains(&minute) {
                continue;
            }
            let t = SINCE + b * u64::from(STEP);
            if with_host {
                let mut host = Record::new(Source::Host, STEP, t);
                host.set(HostSignal::MemoryUsedMib as usize, Some(20_000 + (b % 60) as u32 * 100));
                host.set(HostSignal::MemoryTotalMib as usize, Some(65_536));
                let trouble = (30..35).contains(&minute);
                host.set_state(if trouble { HealthState::Unhealthy } else { HealthState::Healthy });
                host.set_flags(if trouble { FLAG_INTAKE_CLOSED } else { 0 });
                records.push(host);
            }
            for index in 0..gpus {
                let mut gpu = Record::new(Source::Gpu(index), STEP, t);
                if index == 1 && (55..58).contains(&minute) {
                    // Lost: flagged, nothing measured.
                    gpu.set_flags(FLAG_GPU_LOST);
                    records.push(gpu);
                    continue;
                }
                let used = 10_000 + u32::from(index) * 20_000 + (b % 30) as u32 * 200;
                gpu.set(GpuSignal::MemoryUsedMib as usize, Some(used));
                gpu.set(GpuSignal::MemoryTotalMib as usize, Some(81_920));
                gpu.set(GpuSignal::TemperatureC as usize, Some(50 + u32::from(index) * 20 + (b % 10) as u32));
                gpu.set(GpuSignal::UtilizationPct as usize, Some((b % 100) as u32));
                gpu.set(GpuSignal::PowerMilliwatts as usize, Some(200_000 + (b % 50) as u32 * 1000));
                records.push(gpu);
            }
        }
        records.sort_by_key(|r| (r.source, r.start_ms));
        HistoryReadout { records, ..HistoryReadout::default() }
    }

    fn incidents() -> Vec<IncidentRecord> {
        use IncidentSeverity::*;
        vec![
            incident(1, 60, "checkpoint_created", Info, "checkpoint 1 written", json!({"id": "c1"})),
            incident(2, 1800, "health_unhealthy", Error, "GPU 1 memory at 97 %", json!({"gpu": 1})),
            incident(
                3,
                1805,
                "recovery_started",
                Warn,
                "recovery r1 started",
                json!({"id": "r1", "type": "gpu_reset"}),
            ),
            incident(
                4,
                2100,
                "recovery_finished",
                Info,
                "recovery r1 finished",
                json!({"id": "r1", "type": "gpu_reset", "result": "recovered"}),
            ),
            incident(5, 3000, "memory_pressure", Warn, HOSTILE, json!({"note": HOSTILE})),
            incident(6, 3100, "x\"><img onerror=alert(2)>", Critical, "kind is hostile", json!({})),
        ]
    }

    fn report_of(history: &HistoryReadout, incidents: &[IncidentRecord], hours: u64) -> Report {
        model::build(ReportInput {
            history,
            incidents,
            since_ms: SINCE,
            until_ms: SINCE + hours * 3_600_000,
            thresholds: ReportThresholds::default(),
            notes: Vec::new(),
            skipped_incident_lines: 0,
        })
    }

    fn sample_page() -> (Report, String) {
        let report = report_of(&history(2, 720, true), &incidents(), 2);
        let page = render(&report);
        (report, page)
    }

    /// The `<svg>` of chart `key`.
    fn chart<'a>(page: &'a str, key: &str) -> &'a str {
        let open = format!("<svg class=\"chart\" data-chart=\"{key}\"");
        let from = page.find(&open).unwrap_or_else(|| panic!("no chart {key}"));
        let to = from + page[from..].find("</svg>").unwrap();
        &page[from..to]
    }

    #[test]
    fn every_chart_is_there_with_a_series_per_gpu_and_its_threshold() {
        let (report, page) = sample_page();
        assert_eq!(page.matches("<svg class=\"chart\" data-chart=").count(), 6);
        for (key, series) in
            [("gpu-memory", 2), ("host-memory", 1), ("temperature", 2), ("utilization", 2), ("power", 2)]
        {
            let svg = chart(&page, key);
            assert_eq!(svg.matches("<path class=\"series\"").count(), series, "{key}");
            assert!(svg.contains("data-series=\"GPU 0\"") || key == "host-memory", "{key}");
            assert!(!svg.contains("no data"), "{key}");
        }
        assert_eq!(chart(&page, "state").matches("class=\"series\"").count(), 0);
        // Thresholds, at their values and labelled.
        let threshold = |key: &str| {
            let svg = chart(&page, key);
            let open = "<line class=\"threshold\" data-value=\"";
            let at = svg.find(open).expect(key) + open.len();
            svg[at..at + svg[at..].find('"').unwrap()].to_owned()
        };
        assert_eq!(threshold("gpu-memory"), "85");
        assert_eq!(threshold("temperature"), "80");
        assert_eq!(threshold("host-memory"), num(0.8 * 64.0));
        assert!(chart(&page, "gpu-memory").contains("threshold 85 %"));
        // Units on the value axes; local time with its zone on the time axes.
        for (key, unit) in [("gpu-memory", ">%<"), ("host-memory", ">GiB<"), ("temperature", ">°C<"), ("power", ">W<")]
        {
            assert!(
                chart(&page, key).contains(&format!("class=\"axis-title\" x=\"4\" y=\"{}\"{unit}", num(TOP - 12.0))),
                "{key}"
            );
        }
        let zone = LocalTime::at(report.until_ms).zone_label();
        assert!(page.contains(&format!("times in {}", escape(&zone))), "{zone}");
        assert!(page.contains("peak per 10 s"));
        // The verdict in its status' box, with the status word.
        let word = status_colour(report.verdict.status).word;
        assert!(page.contains(&format!("<p class=\"verdict\" data-status=\"{}\">", report.verdict.status.as_str())));
        assert!(page.contains(&format!(">{word}</strong> {}", escape(&report.verdict.line))));
    }

    #[test]
    fn one_marker_per_incident_and_a_row_for_each() {
        let (report, page) = sample_page();
        let state = chart(&page, "state");
        assert_eq!(state.matches("<g class=\"marker ").count(), report.incidents.len());
        for i in &report.incidents {
            assert_eq!(state.matches(&format!("data-seq=\"{}\" data-kind=", i.seq)).count(), 1, "marker {}", i.seq);
            assert_eq!(page.matches(&format!("<tr id=\"incident-{}\"", i.seq)).count(), 1, "row {}", i.seq);
        }
        // Warnings and errors are drawn bigger than infos: a circle each, infos none.
        assert_eq!(
            state.matches("<circle").count(),
            report.incidents.iter().filter(|i| i.severity > IncidentSeverity::Info).count()
        );
        // The recovery, its incidents paired, and the state band with its pause.
        assert_eq!(report.recoveries.len(), 1);
        assert!(state.contains("<g class=\"recovery st-ok\" data-id=\"r1\" data-type=\"gpu_reset\" data-result=\"recovered\" data-seq=\"3\""));
        assert!(state.contains("data-state=\"unhealthy\"") && state.contains("data-state=\"healthy\""));
        assert!(state.contains("data-state=\"no_data\""), "the gap in the record");
        assert_eq!(state.matches("<rect class=\"paused").count(), 1);
    }

    #[test]
    fn data_from_the_logs_is_escaped() {
        let (_, page) = sample_page();
        // Only the page's own two script elements open and close.
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(!page.contains("<b>bold") && !page.contains("<img") && !page.contains("<!-- &"));
        assert!(page.contains(
            "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!-- &amp; &quot;quoted&quot; &#39;single&#39;"
        ));
        assert!(page.contains("data-kind=\"x&quot;&gt;&lt;img onerror=alert(2)&gt;\""));
        // The JSON block reads back to the very same text.
        let open = "<script type=\"application/json\" id=\"incidents\">";
        let from = page.find(open).unwrap() + open.len();
        let block = &page[from..from + page[from..].find("</script>").unwrap()];
        assert!(!block.contains('<'));
        let parsed: serde_json::Value = serde_json::from_str(block).unwrap();
        let hostile = parsed.as_array().unwrap().iter().find(|i| i["seq"] == 5).unwrap();
        assert_eq!(hostile["message"], HOSTILE);
        assert_eq!(hostile["details"]["note"], HOSTILE);
        assert_eq!(hostile["severity"], "warn");

        // Notes name paths, which are data too.
        let (mut report, _) = sample_page();
        report.notes.push("no incident log in /srv/<state> & co".to_owned());
        report.skipped_records = 3;
        let page = render(&report);
        assert!(page.contains("<li>no incident log in /srv/&lt;state&gt; &amp; co</li>"));
        assert!(page.contains("<li>3 damaged history records or incident lines skipped</li>"));
    }

    #[test]
    fn many_long_incidents_make_a_bounded_page() {
        // Messages and details are the log writer's: 250 warnings of 256 KiB of quotes each
        // (each `&quot;` when escaped), and more routine incidents than a page draws.
        let long = "\"".repeat(256 * 1024);
        let mut log: Vec<IncidentRecord> = (0..250)
            .map(|n| incident(n + 1, n * 20, "memory_pressure", IncidentSeverity::Warn, &long, json!({ "blob": long })))
            .collect();
        log.extend(
            (0..6_000).map(|n| incident(1_000 + n, n, "checkpoint_created", IncidentSeverity::Info, "c", json!({}))),
        );
        log.sort_by_key(|i| (i.timestamp_ms, i.seq));
        let report = report_of(&history(2, 720, true), &log, 2);
        let page = render(&report);
        assert!(page.len() < 8 << 20, "{} bytes", page.len());
        assert_eq!(page.matches("<g class=\"marker ").count(), MAX_INCIDENTS_DRAWN);
        for warned in 1..=250 {
            assert!(
                page.contains(&format!("data-seq=\"{warned}\" data-kind=\"memory_pressure\"")),
                "warning {warned} drawn"
            );
        }
        assert!(page.contains(&format!("{} more are not", 6_250 - MAX_INCIDENTS_DRAWN)));
        assert!(page.contains("bytes of details: hpc-health incidents shows them whole"));
    }

    #[test]
    fn the_page_is_self_contained_and_fits_a_phone() {
        let (_, page) = sample_page();
        // The one link: an empty icon, so that a browser asks the server for no /favicon.ico.
        assert_eq!(page.matches("<link").count(), 1);
        assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
        let page = page.replace("<link rel=\"icon\" href=\"data:,\">", "");
        for external in ["http://", "https://", "src=", "<link", "@import", "url(", "<iframe", "<object"] {
            assert!(!page.contains(external), "{external}");
        }
        assert!(page.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(page.contains("color-scheme:light dark") && page.contains("@media (prefers-color-scheme:dark)"));
        // The status colours of the palette, light and dark, and nothing in the style a
        // status would not be.
        for status in STATUSES {
            let c = status_colour(status);
            assert!(page.contains(c.light) && page.contains(c.dark), "{}", status.as_str());
        }
        assert!(page.contains("svg.chart{display:block;width:100%;height:auto}"));
        assert_eq!(page.matches("viewBox=\"0 0 1000 ").count(), 6);
    }

    #[test]
    fn lines_break_across_gaps() {
        let (_, page) = sample_page();
        let svg = chart(&page, "temperature");
        let path = |name: &str| {
            let at = svg.find(&format!("data-series=\"{name}\" stroke=")).unwrap();
            svg[at..at + svg[at..].find("</path>").unwrap()].to_owned()
        };
        assert_eq!(path("GPU 0").matches('M').count(), 2, "one move before and one after the 10 min gap");
        assert_eq!(path("GPU 1").matches('M').count(), 3, "and one after its loss");
    }

    #[test]
    fn losses_and_incidents_line_up_on_every_line_chart() {
        let (report, page) = sample_page();
        assert_eq!(report.verdict.gpus_lost.len(), 1);
        let serious = report.incidents.iter().filter(|i| i.severity > IncidentSeverity::Info).count();
        for key in ["gpu-memory", "host-memory", "temperature", "utilization", "power"] {
            let svg = chart(&page, key);
            assert_eq!(svg.matches("<line class=\"event ").count(), serious, "{key}");
            let lost = if key == "host-memory" { 0 } else { 1 };
            assert_eq!(svg.matches("<rect class=\"lost st-fail\"").count(), lost, "{key}");
        }
        let lost = LocalTime::at(SINCE + 55 * 60_000).hms();
        assert!(page.contains(&format!("<title>GPU 1 lost: {lost}–")), "{lost}");
    }

    #[test]
    fn a_chart_without_data_says_so() {
        let report = report_of(&history(2, 360, false), &[], 1);
        let page = render(&report);
        let host = chart(&page, "host-memory");
        assert_eq!(host.matches("class=\"series\"").count(), 0);
        assert!(host.contains(">no data</text>"));
        assert_eq!(chart(&page, "gpu-memory").matches("class=\"series\"").count(), 2);
        assert!(page.contains("No incidents in this span."));
        // A GPU seen only lost: no line for it anywhere, and no empty path.
        let mut lost_only = history(1, 360, true);
        let mut lost = Record::new(Source::Gpu(3), STEP, SINCE);
        lost.set_flags(FLAG_GPU_LOST);
        lost_only.records.push(lost);
        let page = render(&report_of(&lost_only, &[], 1));
        assert_eq!(chart(&page, "gpu-memory").matches("class=\"series\"").count(), 1);
        assert!(!page.contains("d=\"\""), "an empty path");
        assert!(!page.contains("inf to"), "a range of nothing");
        let empty = render(&report_of(&HistoryReadout::default(), &[], 1));
        assert_eq!(empty.matches("<svg class=\"chart\"").count(), 6);
        assert_eq!(empty.matches(">no data</text>").count(), 5);
    }

    #[test]
    fn the_same_report_renders_the_same_page() {
        let (report, page) = sample_page();
        assert_eq!(render(&report), page);
    }

    #[test]
    fn a_day_of_eight_gpus_is_thinned_to_the_width() {
        let mut infos: Vec<IncidentRecord> = (0..150)
            .map(|n| {
                incident(
                    n,
                    n * 500,
                    "checkpoint_created",
                    IncidentSeverity::Info,
                    "checkpoint written",
                    json!({"n": n}),
                )
            })
            .collect();
        infos.push(incident(150, 40_000, "gpu_issue", IncidentSeverity::Error, "XID 79", json!({})));
        let report = report_of(&history(8, 8640, true), &infos, 24);
        assert_eq!(report.gpus[0].temperature_c.points.len(), 8640 - 60);
        let page = render(&report);
        assert!(page.len() < 1_000_000, "{} bytes", page.len());
        for key in ["gpu-memory", "temperature", "utilization", "power"] {
            let svg = chart(&page, key);
            assert_eq!(svg.matches("<path class=\"series\"").count(), 8, "{key}");
            for path in svg.split("<path class=\"series\"").skip(1) {
                let d = &path[..path.find("<title>").unwrap()];
                // One vertex per 2-unit column of the plot at most.
                assert!(d.matches(['M', 'L']).count() <= ((RIGHT - LEFT) / 2.0) as usize + 2, "{key}");
            }
        }
        assert_eq!(chart(&page, "state").matches("<g class=\"marker ").count(), 151);
        // Over a day: the time ticks carry dates.
        assert!(page.contains(&format!("dy=\"1.15em\">{}</tspan>", LocalTime::at(SINCE + 86_400_000).date())));
    }
}
