//! `rtspd load --plot FILE.svg`: three panels, one above the other: packet
//! loss per second, pacing error per second (mean and maximum), and the
//! histogram of setup latencies. Plain SVG 1.1 that any browser shows.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::proto::measure::Timeline;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// One panel's frame: where its plot area is and how values map onto it.
struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    x_max: f64,
    y_max: f64,
}

impl Panel {
    fn new(index: usize, x_max: f64, y_max: f64) -> Self {
        Self {
            x0: LEFT,
            y0: TOP + index as f64 * (PANEL_H + GAP),
            w: W - LEFT - RIGHT,
            h: PANEL_H,
            x_max: x_max.max(1e-9),
            y_max: nice_ceiling(y_max),
        }
    }

    fn x(&self, v: f64) -> f64 {
        self.x0 + self.w * (v / self.x_max).clamp(0.0, 1.0)
    }

    fn y(&self, v: f64) -> f64 {
        self.y0 + self.h * (1.0 - (v / self.y_max).clamp(0.0, 1.0))
    }

    /// Frame, title, axis labels and five ticks per axis.
    fn axes(&self, svg: &mut String, title: &str, x_label: &str, y_label: &str) {
        let (x0, y0, w, h) = (self.x0, self.y0, self.w, self.h);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x0}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            y0 - 10.0,
            escape(title)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            x0 + w / 2.0,
            y0 + h + 32.0,
            escape(x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="14" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
            y0 + h / 2.0,
            y0 + h / 2.0,
            escape(y_label)
        );
        for i in 0..=5 {
            let f = f64::from(i) / 5.0;
            let (xv, yv) = (self.x_max * f, self.y_max * f);
            let (px, py) = (self.x(xv), self.y(yv));
            let _ = writeln!(
                svg,
                r##"<line x1="{px}" y1="{}" x2="{px}" y2="{}" stroke="#444"/><text x="{px}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
                y0 + h,
                y0 + h + 4.0,
                y0 + h + 16.0,
                fmt_num(xv)
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{}" y1="{py}" x2="{x0}" y2="{py}" stroke="#444"/><line x1="{x0}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                x0 + w,
                x0 - 6.0,
                py + 3.0,
                fmt_num(yv)
            );
        }
    }

    fn polyline(
        &self,
        svg: &mut String,
        points: &[(f64, f64)],
        color: &str,
        label: &str,
        slot: usize,
    ) {
        let pts: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.x(x), self.y(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        let lx = self.x0 + self.w - 150.0;
        let ly = self.y0 + 16.0 + 16.0 * slot as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(label)
        );
    }
}

/// Rounds up to 1, 2 or 5 times a power of ten, so tick labels are round.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 || v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for a run's `timeline` and setup latencies (µs).
pub fn render(title: &str, timeline: &Timeline, setup_us: &Histogram<u64>) -> String {
    let mut svg = String::new();
    let height = TOP + 3.0 * PANEL_H + 2.0 * GAP + 50.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="15">{}</text>"#,
        escape(title)
    );
    let secs = timeline.seconds.len() as f64;

    let loss: Vec<(f64, f64)> = timeline
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let total = s.received + s.lost;
            let pct = if total == 0 {
                0.0
            } else {
                100.0 * s.lost as f64 / total as f64
            };
            (i as f64 + 0.5, pct)
        })
        .collect();
    let worst_loss = loss.iter().map(|p| p.1).fold(0.0, f64::max);
    let p = Panel::new(0, secs, worst_loss.max(0.1));
    p.axes(
        &mut svg,
        "Packet loss per second",
        "seconds since start",
        "loss %",
    );
    p.polyline(&mut svg, &loss, "#c0392b", "lost / (received + lost)", 0);

    let mean: Vec<(f64, f64)> = timeline
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let m = if s.received == 0 {
                0.0
            } else {
                s.error_sum_us as f64 / s.received as f64
            };
            (i as f64 + 0.5, m / 1000.0)
        })
        .collect();
    let max: Vec<(f64, f64)> = timeline
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| (i as f64 + 0.5, s.error_max_us as f64 / 1000.0))
        .collect();
    let worst = max.iter().map(|p| p.1).fold(0.0, f64::max);
    let p = Panel::new(1, secs, worst.max(0.1));
    p.axes(
        &mut svg,
        "Pacing error per second",
        "seconds since start",
        "ms",
    );
    p.polyline(&mut svg, &max, "#8e44ad", "maximum", 0);
    p.polyline(&mut svg, &mean, "#2980b9", "mean", 1);

    // Setup latency histogram: 40 bins up to the maximum.
    let max_ms = setup_us.max() as f64 / 1000.0;
    let bins = 40usize;
    let width = (max_ms / bins as f64).max(1e-3);
    let mut counts = vec![0u64; bins];
    for v in setup_us.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1000.0;
        let b = ((ms / width) as usize).min(bins - 1);
        counts[b] += v.count_at_value();
    }
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    let p = Panel::new(2, width * bins as f64, top.max(1.0));
    p.axes(
        &mut svg,
        "Setup latency (connect to PLAY reply)",
        "ms",
        "sessions",
    );
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (x1, x2) = (p.x(i as f64 * width), p.x((i + 1) as f64 * width));
        let y = p.y(c as f64);
        let _ = writeln!(
            svg,
            r##"<rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#27ae60"/>"##,
            (x2 - x1 - 1.0).max(1.0),
            p.y0 + p.h - y
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::measure::{micros_histogram, record_micros};

    #[test]
    fn renders_every_panel() {
        let mut tl = Timeline::default();
        for i in 0..50u64 {
            let at = Duration::from_millis(i * 100);
            tl.count(at, u64::from(i == 20));
            tl.error(at, Duration::from_micros(100 + 10 * i));
        }
        let mut setup = micros_histogram();
        for ms in [1, 2, 2, 3, 40] {
            record_micros(&mut setup, Duration::from_millis(ms));
        }
        let svg = render("rtspd load <test>", &tl, &setup);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("&lt;test&gt;"), "titles are escaped");
        assert!(
            svg.matches(r##"fill="#27ae60""##).count() >= 3,
            "histogram bars"
        );
        assert_eq!(nice_ceiling(0.07), 0.1);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
