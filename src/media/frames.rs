//! Finding the frames of a self-framed audio file (ADTS, MPEG audio): each
//! frame starts with a header that gives its length. Bytes that are not a
//! frame of the stream (an ID3v2 tag, junk) are skipped by scanning to the
//! next header, and the first frame must be confirmed by the one after it
//! (or by the end), so a false sync in junk does not fix the stream's
//! parameters.

/// A frame header of a self-framed format.
pub(crate) trait FrameHeader: Copy {
    /// The header at the start of `b`, if there is a valid one.
    fn parse(b: &[u8]) -> Option<Self>;
    /// The whole frame in bytes, header included.
    fn frame_len(&self) -> usize;
    /// Whether `other` belongs to the same stream (rate, layout, ...).
    fn same_stream(&self, other: &Self) -> bool;
}

/// The frames of `data[from..end]` as `(offset, header)`, and how many
/// bytes were skipped as not being frames.
pub(crate) fn scan<H: FrameHeader>(
    data: &[u8],
    from: usize,
    end: usize,
) -> (Vec<(usize, H)>, usize) {
    let end = end.min(data.len());
    let mut frames: Vec<(usize, H)> = Vec::new();
    let mut skipped = 0;
    let mut p = from;
    while p < end {
        let fits = |h: &H| {
            let after = &data[p + h.frame_len()..end];
            match frames.first() {
                Some((_, f)) => f.same_stream(h),
                None => after.is_empty() || H::parse(after).is_some_and(|n| n.same_stream(h)),
            }
        };
        match H::parse(&data[p..end]) {
            Some(h) if p + h.frame_len() <= end && fits(&h) => {
                frames.push((p, h));
                p += h.frame_len();
            }
            _ => {
                p += 1;
                skipped += 1;
            }
        }
    }
    (frames, skipped)
}

/// The length of an ID3v2 tag at the start of `data` (0 if there is none).
pub(crate) fn id3v2_len(data: &[u8]) -> usize {
    match data {
        [b'I', b'D', b'3', _, _, flags, s @ ..] if s.len() >= 4 => {
            let size = s[..4]
                .iter()
                .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7F));
            let footer = if flags & 0x10 != 0 { 10 } else { 0 };
            (10 + size + footer).min(data.len())
        }
        _ => 0,
    }
}
