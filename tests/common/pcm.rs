//! PCM in tests: writing WAVs, reading them as L16, and finding where
//! decoded audio sits in its source.

use std::path::Path;

/// Writes a WAV of `spec` holding `samples` (interleaved).
pub fn write_wav<S: hound::Sample + Copy>(
    path: &Path,
    spec: hound::WavSpec,
    samples: impl IntoIterator<Item = S>,
) {
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// A WAV spec for integer samples.
pub fn int_spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    }
}

/// The samples of a WAV file as big-endian 16-bit bytes (what L16 carries).
pub fn wav_l16(path: &Path) -> (Vec<u8>, u32, u16) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let spec = r.spec();
    let data = r
        .samples::<i16>()
        .flat_map(|s| s.expect("sample").to_be_bytes())
        .collect();
    (data, spec.sample_rate, spec.channels)
}

/// Big-endian 16-bit PCM bytes (L16, ffmpeg's `s16be`) as samples.
pub fn l16_samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .collect()
}

/// Where decoded PCM sits against the expected PCM, in frames of
/// `channels` samples: `d >= 0` means `decoded[i] == expected[i + d]` (the
/// client dropped `d` leading frames, or joined `d` frames in), `d < 0`
/// means the client put `-d` frames of its own before the audio. Offsets
/// are tried nearest first, up to `max_frames` either way. An offset fits
/// when the overlap covers at least half the shorter of the two and
/// differs by less than 2 LSB per sample on average, so a stray rounding
/// difference still aligns (and is reported as such) while being one frame
/// off never does (unless the audio is silent, where 0 is found first).
pub fn find_offset(
    decoded: &[i16],
    expected: &[i16],
    channels: usize,
    max_frames: usize,
) -> Option<i64> {
    let fits = |d: i64| {
        let (a, b) = if d >= 0 {
            (
                decoded,
                expected.get(d as usize * channels..).unwrap_or_default(),
            )
        } else {
            (
                decoded.get((-d) as usize * channels..).unwrap_or_default(),
                expected,
            )
        };
        let n = a.len().min(b.len());
        if n == 0 || n < decoded.len().min(expected.len()) / 2 {
            return false;
        }
        let budget = 2 * n as u64;
        let mut diff = 0u64;
        for (x, y) in a.iter().zip(b) {
            diff += u64::from(x.abs_diff(*y));
            if diff >= budget {
                return false;
            }
        }
        true
    };
    std::iter::once(0)
        .chain((1..=max_frames as i64).flat_map(|d| [d, -d]))
        .find(|&d| fits(d))
}

/// Asserts that `decoded` is exactly `expected`: aligned at offset 0 (the
/// offset is found and reported if not), same length, same samples.
pub fn assert_pcm_eq(what: &str, decoded: &[u8], expected: &[u8], channels: u16, rate: u32) {
    let frame = 2 * usize::from(channels);
    assert!(!decoded.is_empty(), "{what}: the client decoded nothing");
    assert_eq!(
        decoded.len() % frame,
        0,
        "{what}: {} bytes is not whole frames",
        decoded.len()
    );
    if decoded == expected {
        return;
    }
    let (decoded, expected) = (l16_samples(decoded), l16_samples(expected));
    let ch = usize::from(channels);
    // Search up to a second either way.
    let offset = find_offset(&decoded, &expected, ch, rate as usize);
    assert_eq!(
        offset,
        Some(0),
        "{what}: decoded audio is not aligned with the clip (offset in frames; positive = \
         leading frames dropped, negative = frames added, None = no alignment within 1 s); \
         decoded {} frames, expected {}",
        decoded.len() / ch,
        expected.len() / ch
    );
    assert_eq!(
        decoded.len() / ch,
        expected.len() / ch,
        "{what}: frame count, aligned at offset 0"
    );
    let diffs: Vec<(usize, i16, i16)> = decoded
        .iter()
        .zip(&expected)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (&a, &b))| (i, a, b))
        .collect();
    let max = diffs
        .iter()
        .map(|&(_, a, b)| a.abs_diff(b))
        .max()
        .unwrap_or(0);
    panic!(
        "{what}: aligned and the same length, but {} of {} samples differ (largest by {max}); \
         first few as (sample index, decoded, expected): {:?}",
        diffs.len(),
        expected.len(),
        &diffs[..diffs.len().min(8)]
    );
}

/// Writes `path`, a 1 s mono WAV at `rate` whose sample n is a distinct
/// value (n * 7 - 20000), so any 20 ms window identifies its position;
/// returns the samples.
pub fn distinct_wav(path: &Path, rate: u32) -> Vec<i16> {
    let samples: Vec<i16> = (0..rate as i32).map(|n| (n * 7 - 20_000) as i16).collect();
    write_wav(path, int_spec(rate, 1, 16), samples.iter().copied());
    samples
}

/// Where `window` starts in `samples` played in a loop (mono).
pub fn offset_in_loop(samples: &[i16], window: &[i16]) -> usize {
    // Twice over, every start has the whole window after it; an offset
    // before 0 is where the window crosses the loop point.
    let twice = samples.repeat(2);
    let offset = find_offset(window, &twice, 1, samples.len())
        .unwrap_or_else(|| panic!("window {:?}.. not found in the source", &window[..4]));
    offset.rem_euclid(samples.len() as i64) as usize
}
