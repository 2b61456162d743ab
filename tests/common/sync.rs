//! A/V sync measured the way a viewer would see it: a clip with a white
//! flash and a beep each second, decoded by ffmpeg, the beep's onset
//! (1 ms resolution) against the flash frame's presentation time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tools::run_tool;

/// Writes a 10 s H.264 + AAC clip: a white frame every second (frame 0 of
/// each 25) and a 50 ms 1 kHz beep starting `shift_ms` after each second.
pub fn sync_clip(dir: &Path, name: &str, shift_ms: u32) -> PathBuf {
    let out = dir.join(name);
    let shift = f64::from(shift_ms) / 1000.0;
    let beep = format!(
        "aevalsrc='if(lt(mod(t-{shift}\\,1)\\,0.05)*gte(t\\,{shift})\\,0.8*sin(2*PI*1000*t)\\,0)':s=48000:d=10"
    );
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=black:s=320x240:r=25:d=10,drawbox=w=iw:h=ih:color=white:t=fill:enable='lt(mod(n\\,25)\\,1)'",
            "-f",
            "lavfi",
            "-i",
            &beep,
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-shortest",
            out.to_str().expect("path"),
        ],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "making {name}: {}", run.stderr);
    out
}

/// Presentation times (s) of lines `pts_time:T` followed by `KEY=VALUE`
/// in an ffmpeg `metadata=print:file=` log.
fn metadata_values(log: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut pts = None;
    for line in log.lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            pts = t.split_whitespace().next().and_then(|t| t.parse().ok());
        } else if let (Some(t), Some((_, v))) = (pts, line.split_once('=')) {
            if let Ok(v) = v.trim().parse::<f64>() {
                out.push((t, v));
            }
        }
    }
    out
}

/// Times where `values` rise over `threshold` (not counting the first
/// value: a reader may start in the middle of an event).
fn onsets(values: &[(f64, f64)], threshold: f64) -> Vec<f64> {
    values
        .windows(2)
        .filter(|w| w[0].1 <= threshold && w[1].1 > threshold)
        .map(|w| w[1].0)
        .collect()
}

/// Decodes `secs` of `input` (a file, or an RTSP URL with `input_args`)
/// and returns the median A/V offset in ms: the beep's onset (1 ms
/// resolution) minus the flash frame's presentation time, over every
/// flash after the first second.
pub fn av_offset_ms(input: &str, input_args: &[&str], dir: &Path, secs: &str) -> f64 {
    let (v, a) = (dir.join("video.log"), dir.join("audio.log"));
    let vf = format!(
        "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file={}",
        v.display()
    );
    let af = format!(
        "aresample=48000,asetnsamples=n=48:p=0,astats=metadata=1:reset=1,\
         ametadata=print:key=lavfi.astats.Overall.Peak_level:file={}",
        a.display()
    );
    let mut args = vec!["-nostdin", "-v", "error", "-y"];
    args.extend_from_slice(input_args);
    args.extend_from_slice(&[
        "-i", input, "-map", "0:v", "-t", secs, "-vf", &vf, "-f", "null", "-", "-map", "0:a", "-t",
        secs, "-af", &af, "-f", "null", "-",
    ]);
    let run = run_tool("ffmpeg", &args, Duration::from_secs(60));
    assert!(run.status.success(), "measuring {input}: {}", run.stderr);
    let read = |p: &Path| std::fs::read_to_string(p).expect("metadata log");
    let flashes = onsets(&metadata_values(&read(&v)), 128.0);
    let beeps = onsets(&metadata_values(&read(&a)), -20.0);
    let start = flashes.first().copied().unwrap_or(0.0) + 0.5;
    let mut offsets: Vec<f64> = flashes
        .iter()
        .filter(|&&f| f > start)
        .filter_map(|&f| {
            beeps
                .iter()
                .map(|&b| (b - f) * 1000.0)
                .filter(|d| d.abs() < 500.0)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
        })
        .collect();
    assert!(
        offsets.len() >= 3,
        "{input}: too few flash/beep pairs: flashes {flashes:?}, beeps {beeps:?}"
    );
    offsets.sort_by(f64::total_cmp);
    offsets[offsets.len() / 2]
}
