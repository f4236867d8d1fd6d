//! The metrics history's costs, for `bench/history.js` (`npm run bench`): one JSON line of
//! medians. Per sample: folding one full check (the host and 8 GPUs) into the open bucket,
//! and the same sample as a naive JSON-lines append with fdatasync. Per bucket: writing it
//! durably (one append, one fdatasync, on the writer thread). Reading 24 h of 8 GPUs, and
//! the morning report on them (read, judged and rendered for a terminal and as a page)
//! beside reading and parsing the naive log of the same day.
//!
//! ```sh
//! cargo run --release --example history-bench
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

use hpc_health::durable::Storage;
use hpc_health::history::record::{GpuSignal, HealthState, HostSignal, RECORD_BYTES};
use hpc_health::history::{read_history, HistoryPolicy, HistoryWriter, Record, Source};
use hpc_health::report::{self, ReportRequest, ReportThresholds};
use serde_json::json;

const GPUS: u8 = 8;
const T0: u64 = 1_700_000_000_000;

fn sample(i: u64) -> Vec<Record> {
    let mut host = Record::new(Source::Host, 1, 0);
    host.set(HostSignal::MemoryUsedMib as usize, Some(200_000 + (i % 1000) as u32));
    host.set(HostSignal::MemoryTotalMib as usize, Some(1_000_000));
    host.set(HostSignal::PsiSomeCentis as usize, Some((i % 300) as u32));
    host.set(HostSignal::PsiFullCentis as usize, Some((i % 100) as u32));
    host.set(HostSignal::Issues as usize, Some(0));
    host.set_state(HealthState::Healthy);
    let mut records = vec![host];
    for g in 0..GPUS {
        let mut gpu = Record::new(Source::Gpu(g), 1, 0);
        gpu.set(GpuSignal::MemoryUsedMib as usize, Some(40_000 + (i % 5000) as u32));
        gpu.set(GpuSignal::MemoryTotalMib as usize, Some(81_559));
        gpu.set(GpuSignal::TemperatureC as usize, Some(60 + (i % 20) as u32));
        gpu.set(GpuSignal::UtilizationPct as usize, Some((i % 101) as u32));
        gpu.set(GpuSignal::PowerMilliwatts as usize, Some(350_000 + (i % 1000) as u32));
        records.push(gpu);
    }
    records
}

/// The same sample as one JSON line, as a service would log it.
fn sample_json(i: u64, records: &[Record]) -> String {
    let gpus: Vec<_> = records[1..]
        .iter()
        .map(|r| {
            json!({ "memory_used_mib": r.stats[0].last, "memory_total_mib": r.stats[1].last, "temperature_c": r.stats[2].last,
                "utilization_pct": r.stats[3].last, "power_w": f64::from(r.stats[4].last) / 1000.0 })
        })
        .collect();
    let h = &records[0];
    json!({ "t": T0 + i * 1000, "memory_used_mib": h.stats[0].last, "memory_total_mib": h.stats[1].last,
        "psi_some_avg10": f64::from(h.stats[2].last) / 100.0, "psi_full_avg10": f64::from(h.stats[3].last) / 100.0,
        "issues": 0, "state": "healthy", "paused": false, "gpus": gpus })
    .to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let policy = HistoryPolicy::default();
    let step = policy.fine.step_ms;

    // Folding samples into the open bucket (10 a step): what each check costs its thread.
    let (writer, _) = HistoryWriter::open(&root.path().join("fold"), policy, Storage::new()).unwrap();
    let samples = 100_000u64;
    let inputs: Vec<Vec<Record>> = (0..1000).map(sample).collect();
    let mut in_record = std::time::Duration::ZERO;
    for i in 0..samples {
        let sample = inputs[(i % 1000) as usize].clone();
        let started = Instant::now();
        writer.record(T0 + i * step / 10, sample);
        in_record += started.elapsed();
    }
    writer.flush().unwrap();
    // The caller's cost: the fold, and queueing a closed bucket (the write is the writer
    // thread's).
    let fold_us = in_record.as_secs_f64() * 1e6 / samples as f64;
    drop(writer);

    // A bucket written durably: one append + fdatasync of 9 records.
    let (writer, _) = HistoryWriter::open(&root.path().join("write"), policy, Storage::new()).unwrap();
    let mut bucket_ms = Vec::new();
    for i in 0..300u64 {
        writer.record(T0 + i * step, inputs[(i % 1000) as usize].clone());
        let started = Instant::now();
        writer.flush().unwrap();
        bucket_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    drop(writer);

    // The naive peer: every sample appended as a JSON line, fdatasync each.
    let path = root.path().join("naive.jsonl");
    let mut file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let mut naive_us = Vec::new();
    let mut line_bytes = 0;
    for i in 0..300u64 {
        let started = Instant::now();
        let mut line = sample_json(i, &inputs[(i % 1000) as usize]);
        line.push('\n');
        file.write_all(line.as_bytes()).unwrap();
        file.sync_data().unwrap();
        naive_us.push(started.elapsed().as_secs_f64() * 1e6);
        line_bytes = line.len();
    }

    // 24 h of 8 GPUs (the fine tier whole), read back.
    let state_dir = root.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let day = state_dir.join(report::HISTORY_SUBDIR);
    {
        let (writer, _) = HistoryWriter::open(&day, policy, Storage::new()).unwrap();
        for i in 0..policy.fine.retention_steps {
            writer.record(T0 + i * step, inputs[(i % 1000) as usize].clone());
        }
        writer.flush().unwrap();
    }
    let mut read_ms = Vec::new();
    let mut records = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let readout = read_history(&day, 0, &policy).unwrap();
        read_ms.push(started.elapsed().as_secs_f64() * 1e3);
        records = readout.records.len();
    }
    let day_bytes: u64 = std::fs::read_dir(&day).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();

    // The morning report on that day: read, judged, rendered both ways.
    let request = ReportRequest {
        since_ms: T0,
        until_ms: T0 + policy.fine.retention_ms(),
        thresholds: ReportThresholds::default(),
    };
    let (mut report_ms, mut text_ms, mut html_ms, mut html_bytes) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..5 {
        let started = Instant::now();
        let built = report::read_report(&state_dir, &request).unwrap();
        report_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        std::hint::black_box(report::text::render(&built, false, 48));
        text_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        html_bytes = std::hint::black_box(report::html::render(&built)).len();
        html_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }

    // The naive peer's day: one line a check at one check a second, read and parsed.
    let naive_day = root.path().join("naive-day.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&naive_day).unwrap());
        for i in 0..86_400u64 {
            writeln!(out, "{}", sample_json(i, &inputs[(i % 1000) as usize])).unwrap();
        }
    }
    let mut naive_read_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let text = std::fs::read_to_string(&naive_day).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        std::hint::black_box(parsed.len());
        naive_read_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }

    println!(
        "{}",
        json!({
            "fold_us_per_sample": fold_us,
            "bucket_write_ms": median(bucket_ms),
            "naive_append_us_per_sample": median(naive_us),
            "record_bytes": RECORD_BYTES,
            "bucket_bytes": RECORD_BYTES * (1 + GPUS as usize),
            "naive_line_bytes": line_bytes,
            "day_read_ms": median(read_ms),
            "day_records": records,
            "day_bytes": day_bytes,
            "disk_bound_bytes_8_gpus": policy.disk_bound_bytes(8),
            "report_read_ms": median(report_ms),
            "report_text_ms": median(text_ms),
            "report_html_ms": median(html_ms),
            "report_html_bytes": html_bytes,
            "naive_day_read_parse_ms": median(naive_read_ms),
            "naive_day_bytes": std::fs::metadata(&naive_day).unwrap().len(),
        })
    );
}
