//! H.264/H.265 Annex B byte streams (ITU-T H.264 Annex B), as ffmpeg's
//! `-f h264` / `-f hevc` muxers write them.

/// The NAL units of an Annex B stream, start codes removed, in order.
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut e = starts.get(k + 1).map_or(data.len(), |n| n - 3);
            // A 4-byte start code's leading zero belongs to no NAL unit.
            while k + 1 < starts.len() && e > s && data[e - 1] == 0 {
                e -= 1;
            }
            &data[s..e]
        })
        .filter(|n| !n.is_empty())
        .collect()
}
