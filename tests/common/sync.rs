//! A/V sync measured the way a viewer would see it: a clip with a white
//! flash and a beep each second, decoded by ffmpeg, the beep's onset (to
//! the sample) against the flash frame's presentation time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tools::run_tool;

/// Writes a 10 s H.264 + AAC clip at `audio_rate` Hz: a white frame every
/// second (frame 0 of each 25) and a 50 ms 1 kHz beep starting `shift_ms`
/// after each second.
pub fn sync_clip(dir: &Path, name: &str, shift_ms: u32, audio_rate: u32) -> PathBuf {
    let out = dir.join(name);
    let shift = f64::from(shift_ms) / 1000.0;
    let beep = format!(
        "aevalsrc='if(lt(mod(t-{shift}\\,1)\\,0.05)*gte(t\\,{shift})\\,0.8*sin(2*PI*1000*t)\\,0)':s={audio_rate}:d=10"
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

/// The number after `key` in `line`, up to the next whitespace.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split(key)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Decodes `secs` of `input` (a file, or an RTSP URL with `input_args`
/// such as `-rtsp_transport udp`) and returns the median A/V offset in ms:
/// the beep's onset minus the flash frame's presentation time, over every
/// flash but the first.
///
/// Flashes are frames whose mean luma (ffmpeg's `showinfo`) rises over 128;
/// a beep's onset is where `silencedetect` ends a silence, to the sample.
/// Both tracks are on the one timeline ffmpeg builds (for RTSP, from the
/// sender reports: what a player syncs by).
pub fn av_offset_ms(input: &str, input_args: &[&str], secs: &str) -> f64 {
    let mut args = vec!["-nostdin", "-hide_banner", "-nostats"];
    args.extend_from_slice(input_args);
    args.extend_from_slice(&[
        "-i",
        input,
        "-map",
        "0:v",
        "-t",
        secs,
        "-vf",
        "showinfo",
        "-f",
        "null",
        "-",
        "-map",
        "0:a",
        "-t",
        secs,
        "-af",
        "silencedetect=n=-20dB:d=0.3",
        "-f",
        "null",
        "-",
    ]);
    let run = run_tool("ffmpeg", &args, Duration::from_secs(60));
    let err = &run.stderr;
    assert!(run.status.success(), "measuring {input}: {err}");
    let lumas: Vec<(f64, f64)> = err
        .lines()
        .filter_map(|l| Some((field(l, "pts_time:")?, field(l, "mean:[")?)))
        .collect();
    // Rising edges only, not the first frame: a reader may start mid-flash.
    let flashes: Vec<f64> = lumas
        .windows(2)
        .filter(|w| w[0].1 <= 128.0 && w[1].1 > 128.0)
        .map(|w| w[1].0)
        .collect();
    let beeps: Vec<f64> = err
        .lines()
        .filter_map(|l| field(l, "silence_end: "))
        .collect();
    let mut offsets: Vec<f64> = flashes
        .iter()
        .skip(1)
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
        "{input}: too few flash/beep pairs: flashes {flashes:?}, beeps {beeps:?}\n{err}"
    );
    offsets.sort_by(f64::total_cmp);
    offsets[offsets.len() / 2]
}
