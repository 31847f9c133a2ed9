//! SVG charts of a report (plotters' SVG backend: text is left to the viewer, so no system
//! fonts are needed).

use crate::report::{by_node, Report};
use plotters::prelude::*;
use std::path::Path;

type Series = (String, Vec<(f64, f64)>);

/// Draws every chart the report has data for into `dir`; their file names.
pub fn draw(r: &Report, dir: &Path) -> Vec<String> {
    let mut drawn = Vec::new();
    let mut chart = |name: &str, panels: Vec<(String, Vec<Series>)>| {
        let panels: Vec<_> = panels
            .into_iter()
            .filter(|(_, s)| s.iter().any(|(_, v)| !v.is_empty()))
            .collect();
        if panels.is_empty() {
            return;
        }
        match lines(&dir.join(name), &panels) {
            Ok(()) => drawn.push(name.to_owned()),
            Err(e) => log::warn!("chart {name} not drawn: {e}"),
        }
    };
    let nodes = by_node(&r.samples);
    let per_node = |f: &dyn Fn(&crate::record::Sample) -> Option<f64>| -> Vec<Series> {
        nodes
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    s.iter().filter_map(|x| Some((x.t, f(x)?))).collect(),
                )
            })
            .collect()
    };
    let pick = |suffix: &str| -> Vec<Series> {
        r.throughput
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(k, v)| (k.trim_end_matches(suffix).trim().to_owned(), v.clone()))
            .collect()
    };
    let requests: Vec<Series> = r
        .throughput
        .iter()
        .filter(|(k, _)| k.starts_with("requests answered"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    chart(
        "throughput.svg",
        vec![
            ("blocks/s".into(), pick("blocks per s")),
            ("tx/s".into(), pick("tx per s")),
            ("requests answered/s".into(), requests),
        ],
    );
    let mut cpu: Vec<Series> = Vec::new();
    for (n, s) in &nodes {
        let pts = s
            .windows(2)
            .filter(|w| w[1].cpu_s >= w[0].cpu_s)
            .map(|w| {
                (
                    w[1].t,
                    100.0 * (w[1].cpu_s - w[0].cpu_s) / (w[1].t - w[0].t).max(1e-3),
                )
            })
            .collect();
        cpu.push((n.clone(), pts));
    }
    chart(
        "resources.svg",
        vec![
            ("RSS MiB".into(), per_node(&|s| Some(s.rss_mib))),
            ("threads".into(), per_node(&|s| Some(s.threads as f64))),
            ("open fds".into(), per_node(&|s| Some(s.fds as f64))),
            ("CPU % of one core".into(), cpu),
        ],
    );
    chart(
        "probe.svg",
        vec![(
            "/health/live latency ms (during the run)".into(),
            per_node(&|s| s.probe_ms),
        )],
    );
    let mut bars: Vec<(String, f64)> = r
        .latency_ms
        .iter()
        .map(|(k, s)| (format!("{k} p99"), s.p99))
        .collect();
    bars.push(("probe p99".into(), r.probe_ms.p99));
    if let Err(e) = bar(&dir.join("latency.svg"), "latency p99, ms", &bars) {
        log::warn!("chart latency.svg not drawn: {e}");
    } else {
        drawn.push("latency.svg".into());
    }
    if !r.errors.is_empty() {
        let errs: Vec<(String, f64)> = r
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64))
            .collect();
        if bar(&dir.join("errors.svg"), "errors by kind", &errs).is_ok() {
            drawn.push("errors.svg".into());
        }
    }
    drawn
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Stacked panels of line series over time.
fn lines(path: &Path, panels: &[(String, Vec<Series>)]) -> Result<()> {
    let root = SVGBackend::new(path, (960, 260 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for ((title, series), area) in panels.iter().zip(areas.iter()) {
        let tmax = series
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        let ymax = series
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .fold(1e-9, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..tmax, 0f64..ymax)?;
        chart.configure_mesh().x_desc("seconds").draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Horizontal bars, one per label, each centred on its label.
fn bar(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    let h = 80 + 26 * bars.len() as u32;
    let root = SVGBackend::new(path, (960, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let vmax = bars.iter().map(|b| b.1).fold(1e-9, f64::max) * 1.15;
    let n = bars.len() as i32;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(280)
        .build_cartesian_2d(0f64..vmax, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let i = i as i32;
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*v, SegmentValue::Exact(i + 1)),
            ],
            Palette99::pick(i as usize).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
