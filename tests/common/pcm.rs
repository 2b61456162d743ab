//! PCM in tests: writing WAVs and reading them as L16.

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
