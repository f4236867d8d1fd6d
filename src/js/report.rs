//! `readReport(stateDir, options?)` and `renderReport(stateDir, options?)`: the morning
//! report on a state directory's metrics history and incident log (`crate::report`), read
//! without their locks, as data or rendered for a terminal or a browser.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::path::PathBuf;

use super::args::{directory_arg, type_error};
use super::input::{js_fields, Count, Fields, Since};
use super::json::JsonShape;
use super::task::spawn_blocking_settled;
use crate::policy::thresholds::{GPU_MEMORY, REPORT_WIDTH, SYSTEM_MEMORY, TEMPERATURE};
use crate::report::{self, since::DEFAULT_SINCE_MS, ReportRequest, ReportThresholds};

/// The thresholds a report draws (default: the package's defaults; a service passes its own).
#[cfg_attr(test, allow(dead_code))]
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ReportThresholdsInput {
    /// Fraction of a GPU's memory above which it is under pressure (default 0.85).
    #[napi(js_name = "gpu_memory")]
    pub gpu_memory: Option<f64>,
    /// Fraction of host memory above which the host is under pressure (default 0.80).
    #[napi(js_name = "system_memory")]
    pub system_memory: Option<f64>,
    /// GPU temperature in °C at or above which a device fails (default 80).
    pub temperature: Option<f64>,
}

js_fields!(ReportThresholdsInput {
    gpu_memory = "gpu_memory" check GPU_MEMORY,
    system_memory = "system_memory" check SYSTEM_MEMORY,
    temperature = "temperature" check TEMPERATURE,
});

/// Options of `readReport` and `renderReport`.
#[cfg_attr(test, allow(dead_code))]
#[derive(Default)]
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ReportOptions {
    /// From when: ms since the Unix epoch, or `'30m'`, `'12h'`, `'7d'` (that long ago), or an
    /// ISO 8601 date or time (local time unless it gives its zone). Default: 12 hours ago.
    #[napi(ts_type = "number | string")]
    pub since: Option<Since>,
    /// Until when, ms since the Unix epoch (default: now).
    #[napi(ts_type = "number")]
    pub until: Option<Count>,
    /// The thresholds to draw.
    pub thresholds: Option<ReportThresholdsInput>,
    /// `renderReport` only: `'text'` (default, for a terminal) or `'html'` (one
    /// self-contained page).
    #[napi(ts_type = "'text' | 'html'")]
    pub format: Option<String>,
    /// `renderReport` text only: ANSI colours (default false).
    pub color: Option<bool>,
    /// `renderReport` text only: sparkline columns (default 48, 8 to 400).
    pub width: Option<f64>,
}

js_fields!(ReportOptions {
    since = "since",
    until = "until",
    thresholds = "thresholds",
    format = "format",
    color = "color",
    width = "width" check REPORT_WIDTH,
});

fn request(env: &Env, options: &ReportOptions) -> Result<ReportRequest> {
    let now = crate::sampling::unix_time_ms().max(0.0) as u64;
    let until = options.until.as_ref().map_or(now, |Count(ms)| *ms);
    let since = options.since.as_ref().map_or(until.saturating_sub(DEFAULT_SINCE_MS), |Since(ms)| *ms);
    if since >= until {
        let message = format!("since ({since}) must be before until ({until})");
        return Err(super::args::range_error(env, message));
    }
    let defaults = ReportThresholds::default();
    let t = options.thresholds.as_ref();
    Ok(ReportRequest {
        since_ms: since,
        until_ms: until,
        thresholds: ReportThresholds {
            gpu_memory: t.and_then(|t| t.gpu_memory).unwrap_or(defaults.gpu_memory),
            system_memory: t.and_then(|t| t.system_memory).unwrap_or(defaults.system_memory),
            temperature_c: t.and_then(|t| t.temperature).unwrap_or(defaults.temperature_c),
        },
    })
}

fn options(env: &Env, options: Option<Unknown>) -> Result<ReportOptions> {
    Ok(ReportOptions::read(env, options, "options")?.unwrap_or_default())
}

/// The state directory and the span a call reports on (read on the JS thread).
fn read_args(env: &Env, state_dir: &Unknown, options: &ReportOptions) -> Result<(PathBuf, ReportRequest)> {
    Ok((PathBuf::from(directory_arg(env, state_dir)?), request(env, options)?))
}

/// The report on `stateDir` (its `history` and `incidents`), as data: the verdict, the
/// state band, pauses, recoveries, each signal's points and the incidents. Read off the JS
/// thread. `ERR_NOT_FOUND` when `stateDir` does not exist.
#[cfg_attr(test, allow(dead_code))]
#[napi(ts_args_type = "stateDir: string, options?: ReportOptions", ts_return_type = "Promise<HealthReport>")]
pub fn read_report<'env>(
    env: &'env Env,
    state_dir: Unknown,
    options: Option<Unknown>,
) -> Result<PromiseRaw<'env, JsonShape>> {
    super::task::guarded(env, "readReport", || {
        let options = self::options(env, options)?;
        for (given, key) in [
            (options.format.is_some(), "format"),
            (options.color.is_some(), "color"),
            (options.width.is_some(), "width"),
        ] {
            if given {
                let message = format!("{key} is for renderReport; readReport returns data");
                return Err(type_error(env, "ERR_INVALID_ARG_VALUE", message));
            }
        }
        let (dir, request) = read_args(env, &state_dir, &options)?;
        // As text in the model's own key order (and past napi's limit on JSON values).
        spawn_blocking_settled(env, move || Ok(JsonShape::of(&report::read_report(&dir, &request)?)))
    })
}

/// The report on `stateDir`, rendered off the JS thread: `format: 'text'` for a terminal
/// (verdict, sparklines, incident timeline) or `'html'` for a browser (one page, nothing
/// fetched).
#[cfg_attr(test, allow(dead_code))]
#[napi(ts_args_type = "stateDir: string, options?: ReportOptions", ts_return_type = "Promise<string>")]
pub fn render_report<'env>(
    env: &'env Env,
    state_dir: Unknown,
    options: Option<Unknown>,
) -> Result<PromiseRaw<'env, String>> {
    super::task::guarded(env, "renderReport", || {
        let options = self::options(env, options)?;
        let html = match options.format.as_deref() {
            None | Some("text") => false,
            Some("html") => true,
            Some(other) => {
                let message = format!("format must be 'text' or 'html', got {other:?}");
                return Err(super::args::range_error(env, message));
            }
        };
        let colour = options.color.unwrap_or(false);
        let width = options.width.map_or(REPORT_WIDTH.default, |w| w) as usize;
        let (dir, request) = read_args(env, &state_dir, &options)?;
        spawn_blocking_settled(env, move || {
            let report = report::read_report(&dir, &request)?;
            Ok(if html { report::html::render(&report) } else { report::text::render(&report, colour, width) })
        })
    })
}
