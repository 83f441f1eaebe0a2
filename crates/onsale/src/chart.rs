//! The timeline chart: the line (waiting, active) above, the rates (admitted/s, sold/s,
//! errors/s) below, over the seconds of the run, with the opening and each chaos command marked.
//!
//! Drawn with `plotters`' bitmap backend; its text uses DejaVu Sans Mono embedded in the binary
//! (`assets/`, Bitstream Vera licence, beside it) through `ab_glyph`, so the chart renders the
//! same on a machine without fontconfig or any font installed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
static REGISTER: Once = Once::new();

/// The series to draw, one value per second from the start of the run (also in the JSON report).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timeline {
    /// WAITING tokens of the room (sampled by the operator API).
    pub waiting: Vec<u64>,
    /// ACTIVE tokens of the room.
    pub active: Vec<u64>,
    /// Admissions per second (by the tokens' `activatedAt`).
    pub admitted: Vec<u64>,
    /// Payments per second.
    pub sold: Vec<u64>,
    /// Answers other than the expected ones per second (failover 503s included).
    pub errors: Vec<u64>,
    /// Second of the opening.
    pub opening: Option<u64>,
    /// Seconds of the chaos commands.
    pub chaos: Vec<u64>,
    /// Second of the last seat sold.
    pub sold_out: Option<u64>,
}

fn max_of(series: &[&[u64]]) -> u64 {
    series.iter().flat_map(|s| s.iter().copied()).max().unwrap_or(0).max(1)
}

/// Draws `t` into a PNG at `path`.
pub fn draw(t: &Timeline, title: &str, path: &Path) -> anyhow::Result<()> {
    let mut font_error = None;
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            font_error = Some(anyhow::anyhow!("the embedded font does not load"));
        }
    });
    if let Some(e) = font_error {
        return Err(e);
    }
    let secs =
        [&t.waiting, &t.active, &t.admitted, &t.sold, &t.errors].iter().map(|s| s.len()).max().unwrap_or(0).max(2)
            as u64;
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(380);

    let marks = |chart: &mut ChartContext<'_, BitMapBackend<'_>, _>, top: u64| -> anyhow::Result<()> {
        let mut lines: Vec<(u64, RGBColor, &str)> = Vec::new();
        if let Some(o) = t.opening {
            lines.push((o, BLACK, "opening"));
        }
        for c in &t.chaos {
            lines.push((*c, MAGENTA, "chaos"));
        }
        if let Some(s) = t.sold_out {
            lines.push((s, GREEN, "sold out"));
        }
        for (x, color, _) in &lines {
            chart.draw_series(LineSeries::new([(*x, 0), (*x, top)], color.stroke_width(1)))?;
        }
        for (x, color, label) in &lines {
            chart.draw_series(std::iter::once(Text::new(
                (*label).to_owned(),
                (*x, top),
                ("sans-serif", 13).into_font().color(color),
            )))?;
        }
        Ok(())
    };

    let line_max = max_of(&[&t.waiting, &t.active]) * 11 / 10 + 1;
    let mut chart = ChartBuilder::on(&top)
        .caption("the line", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..secs, 0..line_max)?;
    chart.configure_mesh().x_desc("seconds").y_desc("tokens").label_style(("sans-serif", 12)).draw()?;
    let series = |v: &[u64]| v.iter().enumerate().map(|(i, y)| (i as u64, *y)).collect::<Vec<_>>();
    chart
        .draw_series(LineSeries::new(series(&t.waiting), BLUE.stroke_width(2)))?
        .label("waiting")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(series(&t.active), RGBColor(230, 120, 0).stroke_width(2)))?
        .label("active")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(230, 120, 0).stroke_width(2)));
    marks(&mut chart, line_max)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let rate_max = max_of(&[&t.admitted, &t.sold, &t.errors]) * 11 / 10 + 1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("per second", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..secs, 0..rate_max)?;
    chart.configure_mesh().x_desc("seconds").y_desc("per second").label_style(("sans-serif", 12)).draw()?;
    for (v, color, label) in [
        (&t.admitted, RGBColor(0, 140, 140), "admitted/s"),
        (&t.sold, RGBColor(0, 150, 0), "sold/s"),
        (&t.errors, RED, "errors/s"),
    ] {
        chart
            .draw_series(LineSeries::new(series(v), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    marks(&mut chart, rate_max)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
