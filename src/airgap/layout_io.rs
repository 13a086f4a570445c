//! Where an OCI image layout lives: a directory, a `.tar` of one (what skopeo calls
//! `oci-archive:`), or a tar on standard input / output. Import reads a [`Source`]; export
//! writes a [`Sink`]. Both speak the layout's relative paths (`index.json`,
//! `blobs/sha256/<hex>`).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A layout to read.
pub(crate) enum Source {
    Dir(PathBuf),
    /// A tar file, its regular files indexed by path: (offset of the bytes, size).
    Tar {
        path: PathBuf,
        entries: HashMap<String, (u64, u64)>,
        /// A spooled copy of standard input, removed when the import ends.
        spooled: bool,
    },
}

/// What a layout path is called in messages: `DIR/blobs/sha256/...` or `FILE.tar:blobs/...`.
pub(crate) fn shown(source: &Source, rel: &str) -> String {
    match source {
        Source::Dir(d) => d.join(rel).display().to_string(),
        Source::Tar { path, spooled, .. } if *spooled => format!("<stdin>:{rel}"),
        Source::Tar { path, .. } => format!("{}:{rel}", path.display()),
    }
}

fn normalize(name: &str) -> String {
    let mut s = name;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.trim_start_matches('/').to_owned()
}

impl Source {
    /// Opens `path`: a directory, a tar file, or `-` (standard input, copied to a file in
    /// `spool_dir` first: a tar's index may come after its blobs).
    pub(crate) fn open(path: &Path, spool_dir: &Path) -> Result<Source, String> {
        if path == Path::new("-") {
            std::fs::create_dir_all(spool_dir)
                .map_err(|e| format!("{}: cannot create: {e}", spool_dir.display()))?;
            let spool = spool_dir.join(format!("import-{}.tar", std::process::id()));
            let mut out = File::create(&spool)
                .map_err(|e| format!("{}: cannot create: {e}", spool.display()))?;
            let copied = io::copy(&mut io::stdin().lock(), &mut out);
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&spool);
                return Err(format!("reading the layout from standard input: {e}"));
            }
            return Self::tar(&spool, true).inspect_err(|_| {
                let _ = std::fs::remove_file(&spool);
            });
        }
        let meta =
            std::fs::metadata(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        if meta.is_dir() {
            Ok(Source::Dir(path.to_owned()))
        } else {
            Self::tar(path, false)
        }
    }

    fn tar(path: &Path, spooled: bool) -> Result<Source, String> {
        let bad = |e: io::Error| format!("{}: not a readable tar archive: {e}", path.display());
        let file = File::open(path).map_err(bad)?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            entries.insert(normalize(&name), (entry.raw_file_position(), entry.size()));
        }
        Ok(Source::Tar {
            path: path.to_owned(),
            entries,
            spooled,
        })
    }

    /// The size of a file of the layout, if it has it.
    pub(crate) fn size(&self, rel: &str) -> Option<u64> {
        match self {
            Source::Dir(d) => std::fs::metadata(d.join(rel))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Source::Tar { entries, .. } => entries.get(rel).map(|(_, n)| *n),
        }
    }

    /// A file's bytes, at most `max` of them; `None` when the layout lacks it.
    pub(crate) fn read_small(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(size) = self.size(rel) else {
            return Ok(None);
        };
        if size > max {
            return Err(format!(
                "{}: {size} bytes, more than the {max} allowed here",
                shown(self, rel)
            ));
        }
        let mut r = self.reader(rel)?;
        let mut v = Vec::with_capacity(size as usize);
        r.read_to_end(&mut v)
            .map_err(|e| format!("{}: cannot read: {e}", shown(self, rel)))?;
        Ok(Some(v))
    }

    /// A reader of a file of the layout, from its start to its recorded size.
    pub(crate) fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>, String> {
        let open_err = |p: &Path, e: io::Error| format!("{}: cannot open: {e}", p.display());
        match self {
            Source::Dir(d) => {
                let p = d.join(rel);
                Ok(Box::new(File::open(&p).map_err(|e| open_err(&p, e))?))
            }
            Source::Tar { path, entries, .. } => {
                let (offset, size) = *entries
                    .get(rel)
                    .ok_or_else(|| format!("{}: not in the archive", shown(self, rel)))?;
                let mut f = File::open(path).map_err(|e| open_err(path, e))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| format!("{}: {e}", shown(self, rel)))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Tar {
            path,
            spooled: true,
            ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The blob paths (`blobs/<alg>/<hex>`) an earlier export holds: what `--since` skips.
pub(crate) fn blobs_of(path: &Path) -> Result<BTreeSet<String>, String> {
    let source = Source::open(path, Path::new("/nonexistent"))?;
    let mut out = BTreeSet::new();
    match &source {
        Source::Dir(d) => {
            let blobs = d.join("blobs");
            let algs = std::fs::read_dir(&blobs)
                .map_err(|e| format!("{}: not an OCI layout: {e}", blobs.display()))?;
            for alg in algs.flatten() {
                let name = alg.file_name().to_string_lossy().into_owned();
                for f in std::fs::read_dir(alg.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    out.insert(format!("blobs/{name}/{}", f.file_name().to_string_lossy()));
                }
            }
        }
        Source::Tar { entries, .. } => {
            out.extend(entries.keys().filter(|k| k.starts_with("blobs/")).cloned());
        }
    }
    Ok(out)
}

/// A layout being written.
pub(crate) enum Sink {
    /// Files are written beside their final name and renamed into place when whole.
    Dir {
        root: PathBuf,
        open: Option<(File, PathBuf, PathBuf)>,
    },
    Tar {
        builder: tar::Builder<Box<dyn Write>>,
        written: BTreeSet<String>,
        /// Bytes of the open entry still to come, and the padding after them.
        left: u64,
        pad: u64,
    },
}

fn tar_header(rel: &str, size: u64, dir: bool) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(rel)?;
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    if dir {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
    } else {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
    }
    h.set_cksum();
    Ok(h)
}

impl Sink {
    /// A sink for `out`: a directory (created when missing; an interrupted export into it
    /// keeps what it finished), a `.tar` file, or `-` for standard output.
    pub(crate) fn create(out: &Path) -> Result<Sink, String> {
        let as_tar = out == Path::new("-") || out.extension().is_some_and(|e| e == "tar");
        if !as_tar {
            std::fs::create_dir_all(out.join("blobs"))
                .map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
            return Ok(Sink::Dir {
                root: out.to_owned(),
                open: None,
            });
        }
        let w: Box<dyn Write> = if out == Path::new("-") {
            Box::new(BufWriter::with_capacity(1 << 20, io::stdout()))
        } else {
            let f =
                File::create(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
            Box::new(BufWriter::with_capacity(1 << 20, f))
        };
        let mut builder = tar::Builder::new(w);
        for d in ["blobs/", "blobs/sha256/"] {
            let h = tar_header(d, 0, true).map_err(|e| e.to_string())?;
            builder
                .append(&h, io::empty())
                .map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Ok(Sink::Tar {
            builder,
            written: BTreeSet::new(),
            left: 0,
            pad: 0,
        })
    }

    /// Whether the layout already holds `rel` whole (`size` bytes).
    pub(crate) fn has(&self, rel: &str, size: u64) -> bool {
        match self {
            Sink::Dir { root, .. } => {
                std::fs::metadata(root.join(rel)).is_ok_and(|m| m.len() == size)
            }
            Sink::Tar { written, .. } => written.contains(rel),
        }
    }

    /// Starts the file `rel` of `size` bytes; [`Sink::write`] its bytes, then [`Sink::end`].
    pub(crate) fn begin(&mut self, rel: &str, size: u64) -> io::Result<()> {
        match self {
            Sink::Dir { root, open } => {
                let path = root.join(rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension(format!("part-{}", std::process::id()));
                *open = Some((File::create(&tmp)?, tmp, path));
                Ok(())
            }
            Sink::Tar {
                builder,
                written,
                left,
                pad,
            } => {
                let h = tar_header(rel, size, false)?;
                builder.get_mut().write_all(h.as_bytes())?;
                written.insert(rel.to_owned());
                *left = size;
                *pad = (512 - size % 512) % 512;
                Ok(())
            }
        }
    }

    pub(crate) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Sink::Dir { open, .. } => match open {
                Some((f, _, _)) => f.write_all(chunk),
                None => Err(io::Error::other("no file begun")),
            },
            Sink::Tar { builder, left, .. } => {
                let n = chunk.len() as u64;
                if n > *left {
                    return Err(io::Error::other("more bytes than the entry's size"));
                }
                *left -= n;
                builder.get_mut().write_all(chunk)
            }
        }
    }

    pub(crate) fn end(&mut self) -> io::Result<()> {
        match self {
            Sink::Dir { open, .. } => {
                let Some((f, tmp, path)) = open.take() else {
                    return Ok(());
                };
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &path)
            }
            Sink::Tar {
                builder, left, pad, ..
            } => {
                if *left != 0 {
                    return Err(io::Error::other(format!(
                        "{left} bytes short of the entry's size"
                    )));
                }
                // An entry's bytes fill whole 512-byte blocks.
                builder.get_mut().write_all(&[0u8; 512][..*pad as usize])?;
                *pad = 0;
                Ok(())
            }
        }
    }

    /// A whole small file.
    pub(crate) fn put(&mut self, rel: &str, bytes: &[u8]) -> io::Result<()> {
        self.begin(rel, bytes.len() as u64)?;
        self.write(bytes)?;
        self.end()
    }

    /// Writes the tar's end, or syncs the directory.
    pub(crate) fn finish(self) -> io::Result<()> {
        match self {
            Sink::Dir { root, .. } => File::open(&root)?.sync_all(),
            Sink::Tar { builder, .. } => {
                let mut w = builder.into_inner()?;
                w.flush()
            }
        }
    }

    /// Removes a directory file begun but not ended (an export that failed midway).
    pub(crate) fn abandon(&mut self) {
        if let Sink::Dir { open, .. } = self {
            if let Some((_, tmp, _)) = open.take() {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_layout(sink: &mut Sink, files: &[(&str, Vec<u8>)]) {
        for (rel, bytes) in files {
            sink.begin(rel, bytes.len() as u64).expect("begin");
            for chunk in bytes.chunks(700) {
                sink.write(chunk).expect("write");
            }
            sink.end().expect("end");
        }
    }

    #[test]
    fn a_tar_written_here_reads_back_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "blobs/sha256/aa",
                (0..1500u32).map(|i| (i % 251) as u8).collect(),
            ),
            ("blobs/sha256/bb", Vec::new()),
            ("index.json", b"{}".to_vec()),
        ];
        for out in [dir.path().join("l.tar"), dir.path().join("l")] {
            let mut sink = Sink::create(&out).expect("sink");
            write_layout(&mut sink, &files);
            assert!(sink.has("blobs/sha256/aa", 1500));
            sink.finish().expect("finish");
            let src = Source::open(&out, dir.path()).expect("source");
            for (rel, bytes) in &files {
                assert_eq!(src.size(rel), Some(bytes.len() as u64), "{rel}");
                let got = src
                    .read_small(rel, 1 << 20)
                    .expect("read")
                    .expect("present");
                assert_eq!(&got, bytes, "{rel} in {}", out.display());
            }
            assert_eq!(src.size("blobs/sha256/cc"), None);
            assert!(
                src.read_small("blobs/sha256/aa", 10).is_err(),
                "over the bound"
            );
            let blobs = blobs_of(&out).expect("blobs");
            assert!(blobs.contains("blobs/sha256/aa") && blobs.contains("blobs/sha256/bb"));
        }
        // Other tools' tars (./-prefixed names, GNU format) read the same.
        let other = dir.path().join("other.tar");
        let status = std::process::Command::new("tar")
            .args(["-cf", other.to_str().expect("utf-8"), "-C"])
            .arg(dir.path().join("l"))
            .arg(".")
            .status()
            .expect("tar runs");
        assert!(status.success());
        let src = Source::open(&other, dir.path()).expect("source");
        assert_eq!(src.size("blobs/sha256/aa"), Some(1500));
    }

    #[test]
    fn a_sink_refuses_more_or_fewer_bytes_than_announced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = Sink::create(&dir.path().join("x.tar")).expect("sink");
        sink.begin("blobs/sha256/aa", 3).expect("begin");
        assert!(sink.write(b"abcd").is_err());
        sink.write(b"ab").expect("write");
        assert!(sink.end().is_err(), "one byte short");
    }
}
