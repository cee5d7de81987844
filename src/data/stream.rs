//! GPT-2 BPE `prepare` of a text file of any size (OpenWebText's is tens of GB) in bounded memory, giving
//! byte for byte the files of the in-memory `prepare`.
//!
//! 1. A first pass streams the file once: it checks that it is UTF-8 and counts its characters (code
//!    points, as Python's `len`), noting a (byte offset, characters before it) mark per block read.
//! 2. The split point is nanoGPT's, the same as `split_90_10`'s: character `int(n · 0.9)`, found as a
//!    byte offset by scanning from the nearest mark.
//! 3. Each side of the split is read in chunks of about `chunk_bytes`, each cut where BPE pre-tokenisation
//!    cannot see across the cut (`safe_cut`), so that tokenizing the chunks one by one gives exactly the
//!    tokens of one call on the whole side. A batch of chunks (one per worker thread, at most
//!    `MAX_IN_FLIGHT`) is tokenized in parallel and appended in order to `train.bin.tmp` / `val.bin.tmp`,
//!    which are renamed into place when both are complete (`AtomicFile`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use rayon::prelude::*;

use super::prepare::{to_le_bytes, train_chars, PrepareReport, TRAIN_BIN, VAL_BIN};
use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::fs::AtomicFile;

/// The largest chunk chosen automatically (`chunk_bytes = None`).
const MAX_CHUNK: usize = 32 << 20;
/// The smallest chunk chosen automatically.
const MIN_CHUNK: usize = 64 << 10;
/// At most this many chunks are read ahead and tokenized at once (so memory stays bounded on many cores).
const MAX_IN_FLIGHT: usize = 64;

/// Tokenize `input` with GPT-2 BPE into `out_dir/{train.bin, val.bin, vocab.json}`, streaming. `chunk_bytes`
/// is the size of the pieces tokenized at once; `None` picks one from the file's size and the thread count
/// (up to `MAX_CHUNK`), so that a small file still gives every thread work. Runs on rayon's global pool
/// (which it starts at its default size, one thread per core, if nothing has yet).
pub fn prepare_gpt2_file(input: &Path, out_dir: &Path, chunk_bytes: Option<usize>) -> Result<PrepareReport> {
    let open = || File::open(input).map_err(|e| Error::io(input, e));
    let len = open()?.metadata().map_err(|e| Error::io(input, e))?.len();
    let threads = rayon::current_num_threads().clamp(1, MAX_IN_FLIGHT);
    let chunk = chunk_bytes
        .unwrap_or_else(|| usize::try_from(len / (4 * threads as u64)).unwrap_or(MAX_CHUNK).clamp(MIN_CHUNK, MAX_CHUNK))
        .max(4);
    let scan = scan(input, &mut open()?, chunk)?;
    if scan.chars == 0 {
        return Err(Error::Data("input text is empty; there is nothing to train on".into()));
    }
    let at = byte_of_char(input, &mut open()?, &scan, train_chars(scan.chars), chunk)?;

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let tok = Tokenizer::gpt2();
    // Bytes [from, to) of the input, tokenized into `out_dir/name` (renamed into place by the caller).
    let part = |name: &str, from: u64, to: u64| -> Result<(AtomicFile, usize)> {
        let mut file = open()?;
        file.seek(SeekFrom::Start(from)).map_err(|e| Error::io(input, e))?;
        let mut out = AtomicFile::create(&out_dir.join(name))?;
        let mut chunks = Chunker { r: file.take(to - from), pending: Vec::new(), eof: false, chunk };
        let (n, bytes) = encode_chunks(input, &mut chunks, &tok, threads, &mut out)?;
        if bytes != to - from {
            return Err(Error::Data(format!("{}: the file changed while it was being prepared", input.display())));
        }
        Ok((out, n))
    };
    let (train, train_tokens) = part(TRAIN_BIN, 0, at)?;
    let (val, val_tokens) = part(VAL_BIN, at, scan.bytes)?;
    train.commit()?;
    val.commit()?;
    tok.save(out_dir)?;
    Ok(PrepareReport { vocab_size: tok.vocab_size(), train_tokens, val_tokens })
}

/// What the first pass learns: the size in bytes and characters, and (byte, characters before it) marks.
struct Scan {
    bytes: u64,
    chars: u64,
    marks: Vec<(u64, u64)>,
}

/// UTF-8 check and character count of the whole file, `block` bytes at a time (a character cut by a
/// block's end is carried into the next). Invalid UTF-8 gets the message of the in-memory `read_input`.
fn scan(path: &Path, file: &mut File, block: usize) -> Result<Scan> {
    let mut buf = vec![0u8; block];
    let (mut carry, mut offset, mut chars) = (0usize, 0u64, 0u64);
    let mut marks = vec![(0, 0)];
    let not_utf8 =
        |at: u64| Error::Data(format!("{}: not valid UTF-8 (first bad byte at offset {at})", path.display()));
    loop {
        let n = fill(file, &mut buf[carry..]).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return if carry > 0 { Err(not_utf8(offset)) } else { Ok(Scan { bytes: offset, chars, marks }) };
        }
        let end = carry + n;
        let valid = match std::str::from_utf8(&buf[..end]) {
            Ok(_) => end,
            Err(e) if e.error_len().is_none() => e.valid_up_to(), // a character continued in the next block
            Err(e) => return Err(not_utf8(offset + e.valid_up_to() as u64)),
        };
        chars += count_chars(&buf[..valid]);
        offset += valid as u64;
        marks.push((offset, chars));
        buf.copy_within(valid..end, 0);
        carry = end - valid;
    }
}

/// Code points in valid UTF-8: the bytes that are not continuation bytes (10xxxxxx).
fn count_chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64
}

/// The byte offset of character `n` (the file's length when `n` is its character count).
fn byte_of_char(path: &Path, file: &mut File, scan: &Scan, n: u64, block: usize) -> Result<u64> {
    let i = scan.marks.partition_point(|&(_, c)| c <= n) - 1; // marks[0] = (0, 0)
    let (mut at, mut chars) = scan.marks[i];
    file.seek(SeekFrom::Start(at)).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; block];
    loop {
        let got = fill(file, &mut buf).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            return Ok(at);
        }
        for (j, &b) in buf[..got].iter().enumerate() {
            if (b as i8) >= -0x40 {
                if chars == n {
                    return Ok(at + j as u64);
                }
                chars += 1;
            }
        }
        at += got as u64;
    }
}

/// Read until `buf` is full or the end of the input; the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Splits a UTF-8 byte stream that starts on a character boundary into chunks of about `chunk` bytes, each
/// ending at a `safe_cut` (a chunk grows while it has none; the last ends with the stream).
struct Chunker<R> {
    r: R,
    pending: Vec<u8>,
    eof: bool,
    chunk: usize,
}

impl<R: Read> Chunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        // `pending[..searched]` holds no cut (searched again only as context when the chunk grows).
        let (mut want, mut searched) = (self.chunk, 0);
        loop {
            if !self.eof && self.pending.len() < want {
                let old = self.pending.len();
                self.pending.resize(want, 0);
                let n = fill(&mut self.r, &mut self.pending[old..])?;
                self.pending.truncate(old + n);
                self.eof = old + n < want;
            }
            if self.pending.is_empty() {
                return Ok(None);
            }
            let cut = if self.eof { Some(self.pending.len()) } else { safe_cut(&self.pending, searched) };
            match cut {
                Some(c) => {
                    let rest = self.pending[c..].to_vec();
                    let mut chunk = std::mem::replace(&mut self.pending, rest);
                    chunk.truncate(c);
                    return Ok(Some(chunk));
                }
                None => {
                    searched = self.pending.len();
                    want += self.chunk;
                }
            }
        }
    }
}

/// The last position p ≥ `from` (and > 0) at which `text`, UTF-8 from a character boundary, can be cut so
/// that GPT-2's pre-tokenisation of the two halves gives the pieces of the whole: `text[p]` is ASCII
/// whitespace and the character before it is not whitespace. A newline that ends a line is preferred.
///
/// Why that is safe, for r50k's pattern `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|
/// \s++$|\s+(?!\S)|\s` (tiktoken-rs): the character before p is not whitespace, so the piece that holds it
/// is of the first four kinds, which hold whitespace only as a first character, so in the whole text a
/// piece ends at p. The pieces before p look at most one character past their end, that is at most at p,
/// where the last one's run stops as it does at the chunk's end; `$` (the end of the text) cannot match
/// inside the left half, which ends in no whitespace, nor at p in the whole. From p on, both read the same
/// text and the pattern looks nowhere behind. Whitespace here is `char::is_whitespace` (Unicode
/// White_Space), which is the pattern's `\s`. Cutting after a space (` ?\p{L}` takes it with the next
/// word) or after a newline that starts a run of them (`\s+(?!\S)` splits the run elsewhere) is not safe.
fn safe_cut(text: &[u8], from: usize) -> Option<usize> {
    let ok = |p: usize| prev_char(text, p).is_some_and(|c| !c.is_whitespace());
    let ws = |b: u8| b.is_ascii() && (b as char).is_whitespace();
    let range = from.max(1)..text.len();
    range.clone().rev().find(|&p| text[p] == b'\n' && ok(p)).or_else(|| range.rev().find(|&p| ws(text[p]) && ok(p)))
}

/// The character ending just before byte `p` (a character boundary).
fn prev_char(text: &[u8], p: usize) -> Option<char> {
    let start = (p.saturating_sub(4)..p).rev().find(|&q| (text[q] as i8) >= -0x40)?;
    std::str::from_utf8(&text[start..p]).ok()?.chars().next_back()
}

/// Tokenize every chunk, up to `threads` at once, appending the ids in order to `out`; the number of ids
/// and of bytes read.
fn encode_chunks(
    path: &Path,
    chunks: &mut Chunker<impl Read>,
    tok: &Tokenizer,
    threads: usize,
    out: &mut AtomicFile,
) -> Result<(usize, u64)> {
    let (mut n, mut bytes) = (0, 0);
    loop {
        let mut batch = Vec::with_capacity(threads);
        while batch.len() < threads {
            match chunks.next_chunk().map_err(|e| Error::io(path, e))? {
                Some(c) => batch.push(c),
                None => break,
            }
        }
        if batch.is_empty() {
            return Ok((n, bytes));
        }
        bytes += batch.iter().map(|c| c.len() as u64).sum::<u64>();
        let ids: Vec<Result<Vec<u16>>> = batch
            .par_iter()
            .map(|c| {
                let text = std::str::from_utf8(c).map_err(|_| {
                    Error::Data(format!("{}: the file changed while it was being prepared", path.display()))
                })?;
                tok.encode(text)
            })
            .collect();
        for chunk_ids in ids {
            let chunk_ids = chunk_ids?;
            out.write_all(&to_le_bytes(&chunk_ids))?;
            n += chunk_ids.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The chunks of `text` (asserting they rebuild it), and their tokens one chunk at a time.
    fn chunked(text: &str, chunk: usize) -> (usize, Vec<u16>) {
        let tok = Tokenizer::gpt2();
        let mut chunks = Chunker { r: text.as_bytes(), pending: Vec::new(), eof: false, chunk };
        let (mut joined, mut ids, mut count) = (Vec::new(), Vec::new(), 0);
        while let Some(c) = chunks.next_chunk().unwrap() {
            assert!(!c.is_empty());
            joined.extend_from_slice(&c);
            ids.extend(tok.encode(std::str::from_utf8(&c).unwrap()).unwrap());
            count += 1;
        }
        assert_eq!(joined, text.as_bytes());
        (count, ids)
    }

    #[test]
    fn cuts_between_a_non_space_and_a_space() {
        assert_eq!(safe_cut(b"ab cd", 0), Some(2));
        assert_eq!(safe_cut(b"ab\ncd ef", 0), Some(2)); // a newline first
        assert_eq!(safe_cut(b"a \n", 0), Some(1)); // not after a space
        assert_eq!(safe_cut("é\u{a0}\nx".as_bytes(), 0), None); // NBSP is whitespace
        assert_eq!(safe_cut("é\tx".as_bytes(), 0), Some(2));
        assert_eq!(safe_cut(b"abc", 0), None);
        assert_eq!(safe_cut(b" abc", 0), None);
        // Only positions from `from` on.
        assert_eq!((safe_cut(b"a b\nc", 2), safe_cut(b"a b\nc", 4)), (Some(3), None));
        // Naive cuts (after a space; after a newline that starts a run) change the tokens: the test below
        // can tell.
        let tok = Tokenizer::gpt2();
        for (text, at) in [("a b", 2), ("a\n\n\n\n\nb", 2)] {
            let naive = [tok.encode(&text[..at]).unwrap(), tok.encode(&text[at..]).unwrap()].concat();
            assert_ne!(tok.encode(text).unwrap(), naive, "{text:?} cut at {at}");
        }
    }

    #[test]
    fn chunked_bpe_equals_whole_bpe() {
        // Pieces that exercise the pattern's every branch: contractions, letters, digits, punctuation,
        // runs of whitespace (ASCII and not, `\s+(?!\S)` and `\s++$`), multi-byte characters.
        const PIECES: &[&str] = &[
            "a",
            "bc",
            "Zé",
            "中文",
            "😀",
            "1",
            "42",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            "\r\n",
            "\u{0b}",
            "\u{0c}",
            "\u{1c}",
            "\u{85}",
            "\u{a0}",
            "\u{3000}",
            "'s",
            "'ll",
            "'",
            "!",
            ".",
            "--",
            "<|endoftext|>",
        ];
        let mut rng = Rng::new(7, 0);
        let mut many = 0;
        for _ in 0..400 {
            let n = 1 + rng.below(120);
            let text: String = (0..n).map(|_| PIECES[rng.below(PIECES.len() as u64) as usize]).collect();
            let chunk = 1 + rng.below(24) as usize;
            let (count, ids) = chunked(&text, chunk);
            assert_eq!(ids, Tokenizer::gpt2().encode(&text).unwrap(), "{text:?} in chunks of {chunk}");
            many += usize::from(count > 3);
        }
        assert!(many > 200, "only {many} texts were cut into more than 3 chunks");
        // No safe cut at all: one chunk, grown to the whole text.
        assert_eq!(chunked(&"x".repeat(100), 8).0, 1);
    }
}
