//! Writes the bundled sample clips: deterministic 16-bit PCM WAV files
//! (synthesized, no randomness, no recordings), about 1.4 MB in all.
//!
//! ```text
//! cargo run --example gen_media -- [OUT_DIR]     # default: media
//! ```
//!
//! Every clip is built so that a listener can hear where a seek landed:
//! second N starts with 100 ms of silence, then plays at pitch
//! `base · 2^(N/4)` (a minor third up per second, or down for a falling
//! voice), so no two seconds share a waveform. Peaks are at -6 dBFS and
//! every beep has 10 ms fades against clicks.

use std::error::Error;
use std::path::Path;

/// One channel of a clip, as a function of the second it is in.
struct Voice {
    base_hz: f64,
    /// +1 raises the pitch a quarter octave per second, -1 lowers it.
    direction: f64,
    /// Frequency ratios of the notes sounded together (1.0 alone: a tone).
    chord: &'static [f64],
    /// Each beep's length and the gap after it.
    beep_ms: (u32, u32),
    /// How many beeps second N holds.
    beeps: fn(u32) -> u32,
}

struct Clip {
    path: &'static str,
    rate: u32,
    seconds: u32,
    /// One voice per channel.
    voices: &'static [Voice],
}

const MAJOR_TRIAD: &[f64] = &[1.0, 1.25, 1.5];
const TONE: &[f64] = &[1.0];
/// One long beep filling the rest of each second.
const STEADY: (u32, u32) = (900, 0);

const CLIPS: &[Clip] = &[
    Clip {
        path: "tones-8k-mono.wav",
        rate: 8000,
        seconds: 5,
        voices: &[Voice {
            base_hz: 440.0,
            direction: 1.0,
            chord: TONE,
            beep_ms: STEADY,
            beeps: |_| 1,
        }],
    },
    Clip {
        path: "music-44k-stereo.wav",
        rate: 44_100,
        seconds: 5,
        voices: &[
            // Left: a rising major chord. Right: a falling tone, pulsing.
            Voice {
                base_hz: 220.0,
                direction: 1.0,
                chord: MAJOR_TRIAD,
                beep_ms: STEADY,
                beeps: |_| 1,
            },
            Voice {
                base_hz: 660.0,
                direction: -1.0,
                chord: TONE,
                beep_ms: (200, 100),
                beeps: |_| 3,
            },
        ],
    },
    Clip {
        path: "beeps-48k-mono.wav",
        rate: 48_000,
        seconds: 4,
        voices: &[Voice {
            base_hz: 880.0,
            direction: 1.0,
            chord: TONE,
            beep_ms: (100, 100),
            beeps: |_| 4,
        }],
    },
    Clip {
        // Second N holds N + 1 beeps: it counts.
        path: "speech/count-16k-mono.wav",
        rate: 16_000,
        seconds: 3,
        voices: &[Voice {
            base_hz: 330.0,
            direction: 1.0,
            chord: TONE,
            beep_ms: (120, 80),
            beeps: |n| n + 1,
        }],
    },
];

/// Peak amplitude: -6 dBFS.
const AMPLITUDE: f64 = 0.5;
const LEAD_IN_S: f64 = 0.1;
const FADE_S: f64 = 0.01;

impl Voice {
    /// The sample at `t` seconds into the clip, in [-AMPLITUDE, AMPLITUDE].
    fn sample(&self, t: f64) -> f64 {
        let second = t.floor();
        let (on, off) = (
            f64::from(self.beep_ms.0) / 1000.0,
            f64::from(self.beep_ms.1) / 1000.0,
        );
        let since_lead_in = t - second - LEAD_IN_S;
        let beep = (since_lead_in / (on + off)).floor();
        let within = since_lead_in - beep * (on + off);
        if since_lead_in < 0.0 || beep >= f64::from((self.beeps)(second as u32)) || within >= on {
            return 0.0;
        }
        let envelope = (within / FADE_S).min((on - within) / FADE_S).min(1.0);
        let hz = self.base_hz * (self.direction * second / 4.0).exp2();
        let sum: f64 = self
            .chord
            .iter()
            .map(|r| (std::f64::consts::TAU * hz * r * t).sin())
            .sum();
        AMPLITUDE * envelope * sum / self.chord.len() as f64
    }
}

fn write_clip(dir: &Path, clip: &Clip) -> Result<u64, Box<dyn Error>> {
    let path = dir.join(clip.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let spec = hound::WavSpec {
        channels: clip.voices.len() as u16,
        sample_rate: clip.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(&path, spec)?;
    for i in 0..clip.rate * clip.seconds {
        let t = f64::from(i) / f64::from(clip.rate);
        for voice in clip.voices {
            wav.write_sample((voice.sample(t) * f64::from(i16::MAX)).round() as i16)?;
        }
    }
    wav.finalize()?;
    let size = std::fs::metadata(&path)?.len();
    println!("{} ({size} bytes)", path.display());
    Ok(size)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args_os().nth(1).unwrap_or_else(|| "media".into());
    let mut total = 0;
    for clip in CLIPS {
        total += write_clip(Path::new(&dir), clip)?;
    }
    println!("{total} bytes in all");
    Ok(())
}
