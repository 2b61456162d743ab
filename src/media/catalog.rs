//! The media root: request paths to clips, with no escape from the root, and
//! a cache so each file is read once and its samples are shared (as `Bytes`)
//! by every session playing it.
//!
//! Path safety: [`crate::proto::target`] has already refused `..`, `.`, `:`,
//! backslashes and control characters in segments. Here each component is
//! examined with `symlink_metadata` (which never follows a link), and a
//! symbolic link is followed only when its target, resolved lexically, stays
//! inside the root, so nothing outside the root is ever opened or stat'ed.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::clip::{Clip, ClipOptions};
use super::{adts, annexb, mp3, mp4, wav, MediaError};
use crate::proto::packetize::l16;

struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    clip: Arc<Clip>,
}

/// The served folder.
pub struct Catalog {
    root: PathBuf,
    opts: ClipOptions,
    cache: Mutex<HashMap<String, Cached>>,
    /// One lock per clip being loaded, so concurrent first opens of a clip
    /// decode it once (the others wait, then find it cached).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Most components followed while resolving one path (links included).
const MAX_COMPONENTS: usize = 64;
/// Most files listed at start-up.
const MAX_LISTED: usize = 10_000;

impl Catalog {
    pub fn new(root: &Path, opts: ClipOptions) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
            opts,
            cache: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens (or fetches from the cache) the clip at `rel`. Blocking.
    pub fn open(&self, rel: &str) -> Result<Arc<Clip>, MediaError> {
        let path = self.resolve(rel)?;
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(MediaError::NotFound);
        }
        let modified = meta.modified().ok();
        let cached = || {
            self.lock()
                .get(rel)
                .filter(|c| c.modified == modified && c.len == meta.len())
                .map(|c| c.clip.clone())
        };
        if let Some(clip) = cached() {
            return Ok(clip);
        }
        let gate = self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(rel.to_owned())
            .or_default()
            .clone();
        let _loading = gate.lock().unwrap_or_else(|e| e.into_inner());
        // Someone else may have loaded it while this thread waited.
        if let Some(clip) = cached() {
            return Ok(clip);
        }
        let loaded = self.load(rel, &path);
        let done = || {
            self.loading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(rel);
        };
        let clip = match loaded {
            Ok(c) => Arc::new(c),
            Err(e) => {
                done();
                return Err(e);
            }
        };
        let mut cache = self.lock();
        if cache.len() >= self.opts.max_cached {
            // Evict anything: clips in use stay alive through their Arcs.
            if let Some(k) = cache.keys().next().cloned() {
                cache.remove(&k);
            }
        }
        cache.insert(
            rel.to_owned(),
            Cached {
                modified,
                len: meta.len(),
                clip: clip.clone(),
            },
        );
        drop(cache);
        // Cached first, then the gate goes: a newcomer finds one or the other.
        done();
        Ok(clip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self, rel: &str, path: &Path) -> Result<Clip, MediaError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let tracks = match ext.as_deref() {
            Some("wav") => {
                let pcm = wav::load(BufReader::new(File::open(path)?), self.opts.max_clip_bytes)?;
                vec![l16::track(
                    pcm.data,
                    pcm.sample_rate,
                    pcm.channels,
                    self.opts.ptime,
                    self.opts.max_payload,
                )]
            }
            Some(e) if MP4_EXTENSIONS.contains(&e) => {
                let data = read_whole(path, self.opts.max_clip_bytes)?;
                mp4::load(data, &self.opts)?.tracks
            }
            Some(e @ ("264" | "h264" | "aac" | "mp3")) => {
                let data = read_whole(path, self.opts.max_clip_bytes)?;
                vec![match e {
                    "aac" => adts::load(data, &self.opts)?,
                    "mp3" => mp3::load(data, &self.opts)?,
                    _ => annexb::load(&data, &self.opts)?,
                }]
            }
            _ => return Err(MediaError::Unsupported(format!("{rel}: not a media file"))),
        };
        Ok(Clip::new(rel.to_owned(), tracks))
    }

    /// Maps a safe relative path onto the file system without leaving the root.
    fn resolve(&self, rel: &str) -> Result<PathBuf, MediaError> {
        let mut pending: Vec<String> = rel
            .split('/')
            .rev()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if pending.is_empty() {
            return Err(MediaError::NotFound);
        }
        let mut cur = self.root.clone();
        let mut steps = 0;
        while let Some(seg) = pending.pop() {
            steps += 1;
            if steps > MAX_COMPONENTS {
                return Err(MediaError::NotFound);
            }
            cur.push(&seg);
            let meta = std::fs::symlink_metadata(&cur).map_err(|_| MediaError::NotFound)?;
            if !meta.file_type().is_symlink() {
                continue;
            }
            let link = std::fs::read_link(&cur).map_err(|_| MediaError::NotFound)?;
            cur.pop();
            // Resolve the link text against its folder, lexically.
            let mut target = cur.clone();
            for c in link.components() {
                match c {
                    Component::Normal(s) => target.push(s),
                    Component::ParentDir => {
                        target.pop();
                    }
                    Component::CurDir => {}
                    Component::RootDir | Component::Prefix(_) => return Err(MediaError::NotFound),
                }
            }
            let inside = target
                .strip_prefix(&self.root)
                .map_err(|_| MediaError::NotFound)?;
            // Re-walk the target from the root so links inside it are checked too.
            for c in inside.components().rev() {
                if let Component::Normal(s) = c {
                    pending.push(s.to_string_lossy().into_owned());
                }
            }
            cur = self.root.clone();
        }
        Ok(cur)
    }

    /// Every servable clip under the root, as relative paths, sorted.
    /// Unreadable or unsupported files are logged and skipped.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![(self.root.clone(), String::new(), 0usize)];
        while let Some((dir, prefix, depth)) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() && depth < 16 {
                    dirs.push((entry.path(), rel, depth + 1));
                } else if out.len() < MAX_LISTED {
                    let lower = name.to_ascii_lowercase();
                    let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
                    let probed = if ext == "wav" {
                        File::open(entry.path())
                            .map_err(MediaError::from)
                            .and_then(|f| wav::probe(BufReader::new(f)).map(drop))
                    } else if MP4_EXTENSIONS.contains(&ext) {
                        probe_mp4(&entry.path())
                    } else if ELEMENTARY_EXTENSIONS.contains(&ext) {
                        Ok(())
                    } else {
                        continue;
                    };
                    match probed {
                        Ok(_) => out.push(rel),
                        Err(e) => tracing::warn!(clip = %rel, error = %e, "skipping clip"),
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// File name extensions served as MP4/MOV.
const MP4_EXTENSIONS: [&str; 4] = ["mp4", "m4v", "m4a", "mov"];

/// Elementary streams: H.264 Annex B, AAC in ADTS, MPEG audio.
const ELEMENTARY_EXTENSIONS: [&str; 4] = ["264", "h264", "aac", "mp3"];

/// Reads a whole file, refusing one larger than `limit` bytes.
fn read_whole(path: &Path, limit: u64) -> Result<bytes::Bytes, MediaError> {
    use std::io::Read;
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    if len > limit {
        return Err(MediaError::TooLarge(len, limit));
    }
    let mut data = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(MediaError::TooLarge(data.len() as u64, limit));
    }
    Ok(data.into())
}

/// Cheap check for listing: an ISO BMFF file starts with an `ftyp` box.
fn probe_mp4(path: &Path) -> Result<(), MediaError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    File::open(path)?.read_exact(&mut head)?;
    if &head[4..8] == b"ftyp" {
        Ok(())
    } else {
        Err(MediaError::Unsupported("no ftyp box".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, frames: usize) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            w.write_sample(i as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn concurrent_first_opens_load_once() {
        let dir = tempfile::tempdir().unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.path().join("a.wav"), spec).unwrap();
        for i in 0..80_000 {
            w.write_sample(i as i16).unwrap();
        }
        w.finalize().unwrap();
        let cat = Arc::new(Catalog::new(dir.path(), ClipOptions::default()).unwrap());
        let clips: Vec<Arc<Clip>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cat.open("a.wav").unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            clips.iter().all(|c| Arc::ptr_eq(c, &clips[0])),
            "one load, one clip"
        );
        assert!(
            cat.loading.lock().unwrap().is_empty(),
            "no gate left behind"
        );
    }

    #[test]
    fn opens_lists_and_shares() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write_wav(&dir.path().join("a.wav"), 800);
        write_wav(&dir.path().join("sub/b.wav"), 80);
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("bad.wav"), "not riff").unwrap();
        let cat = Catalog::new(dir.path(), ClipOptions::default()).unwrap();
        assert_eq!(cat.list(), ["a.wav", "sub/b.wav"]);
        let a = cat.open("a.wav").unwrap();
        assert!((a.duration - 0.1).abs() < 1e-9);
        assert!(
            Arc::ptr_eq(&a, &cat.open("a.wav").unwrap()),
            "cached and shared"
        );
        assert!(matches!(
            cat.open("notes.txt"),
            Err(MediaError::Unsupported(_))
        ));
        assert!(matches!(
            cat.open("bad.wav"),
            Err(MediaError::Unsupported(_))
        ));
        assert!(matches!(cat.open("missing.wav"), Err(MediaError::NotFound)));
        assert!(matches!(cat.open("sub"), Err(MediaError::NotFound)));
        assert!(matches!(cat.open(""), Err(MediaError::NotFound)));
    }

    #[test]
    fn symlinks_do_not_escape() {
        let outside = tempfile::tempdir().unwrap();
        write_wav(&outside.path().join("secret.wav"), 80);
        let dir = tempfile::tempdir().unwrap();
        write_wav(&dir.path().join("a.wav"), 80);
        std::os::unix::fs::symlink(
            outside.path().join("secret.wav"),
            dir.path().join("abs.wav"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/passwd",
            dir.path().join("rel.wav"),
        )
        .unwrap();
        std::os::unix::fs::symlink("a.wav", dir.path().join("alias.wav")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let cat = Catalog::new(dir.path(), ClipOptions::default()).unwrap();
        assert!(matches!(cat.open("abs.wav"), Err(MediaError::NotFound)));
        assert!(matches!(cat.open("rel.wav"), Err(MediaError::NotFound)));
        assert!(matches!(
            cat.open("out/secret.wav"),
            Err(MediaError::NotFound)
        ));
        assert!(
            cat.open("alias.wav").is_ok(),
            "a link inside the root is followed"
        );
    }
}
