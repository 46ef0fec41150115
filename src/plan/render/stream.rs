//! What the renderers share to render a plan one tenant at a time: the counts kept across the
//! fleet ([`Fleet`]) and where rendered tenants wait until the header that precedes them (which
//! needs the whole fleet's counts) is written ([`Spill`]).
//!
//! A fleet plan of 1,000 tenants is over a hundred megabytes of text; past [`SPOOL_LIMIT`] it
//! waits in a temporary file instead of memory, so memory stays bounded, and nothing reaches the
//! output until the whole plan was made (an error on the last tenant leaves the output empty, as
//! before). A plan of a few tenants never touches the disk.
//!
//! **Invariant:** holds per tenant only what a summary needs; never a tenant's changes.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};

use crate::plan::{Partial, Summary, TenantPlan};

/// What a spooled [`Spill`] holds in memory before it moves to a temporary file: the text of fifty
/// tenants or so. Creating, writing and reading back a file cost a 20-tenant plan 4% of its time.
pub const SPOOL_LIMIT: usize = 8 << 20;

/// Where rendered tenants wait: memory (for a plan already held whole), memory up to a limit and
/// then an unnamed temporary file (for a fleet streamed through), or such a file from the start.
pub enum Spill {
    Memory(Vec<u8>),
    Spooled { held: Vec<u8>, limit: usize },
    File(BufWriter<File>),
}

impl Spill {
    pub fn memory() -> Spill {
        Spill::Memory(Vec::new())
    }

    /// In memory until it holds more than [`SPOOL_LIMIT`] bytes, then in a temporary file.
    pub fn spooled() -> Spill {
        Spill::spooled_up_to(SPOOL_LIMIT)
    }

    /// In memory until it holds more than `limit` bytes, then in a temporary file. The room is
    /// reserved at once (address space: the system gives memory only where it is written), so the
    /// text is never copied to a larger buffer: growing one by doubling cost a 20-tenant plan 8%
    /// of its CPU time, most of it the kernel zeroing the pages of each larger buffer.
    pub fn spooled_up_to(limit: usize) -> Spill {
        Spill::Spooled { held: Vec::with_capacity(limit), limit }
    }

    /// An unnamed temporary file (removed by the system when closed, even on a crash).
    pub fn file() -> io::Result<Spill> {
        Ok(Spill::File(temp_file()?))
    }

    pub fn write(&mut self, s: &str) -> io::Result<()> {
        match self {
            Spill::Memory(v) => {
                v.extend_from_slice(s.as_bytes());
                Ok(())
            }
            Spill::Spooled { held, limit } if held.len() + s.len() <= *limit => {
                held.extend_from_slice(s.as_bytes());
                Ok(())
            }
            Spill::Spooled { held, .. } => {
                let mut f = temp_file()?;
                f.write_all(held)?;
                f.write_all(s.as_bytes())?;
                *self = Spill::File(f);
                Ok(())
            }
            Spill::File(f) => f.write_all(s.as_bytes()),
        }
    }

    /// Copies everything written so far to `out`.
    pub fn copy_to(self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Spill::Memory(v) | Spill::Spooled { held: v, .. } => out.write_all(&v),
            Spill::File(f) => {
                let mut f = f.into_inner().map_err(io::IntoInnerError::into_error)?;
                f.rewind()?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n])?;
                }
            }
        }
    }
}

fn temp_file() -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, tempfile::tempfile()?))
}

/// Where a piece written to [`Bodies`] is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    at: u64,
    len: usize,
}

/// Pieces of text written once and read back in any order once everything was written: the
/// rendered changes of the groups of tenants (`group.rs`), which are shown in an order known only
/// at the end. Held in a [`Spill`], so a fleet's worth of them costs no memory when it is a file.
pub(super) struct Bodies {
    spill: Spill,
    at: u64,
}

impl Bodies {
    pub fn new(spill: Spill) -> Bodies {
        Bodies { spill, at: 0 }
    }

    pub fn put(&mut self, s: &str) -> io::Result<Span> {
        self.spill.write(s)?;
        let span = Span { at: self.at, len: s.len() };
        self.at += s.len() as u64;
        Ok(span)
    }

    /// Everything written, to read back.
    pub fn reader(self) -> io::Result<BodyReader> {
        Ok(match self.spill {
            Spill::Memory(v) | Spill::Spooled { held: v, .. } => BodyReader::Memory(v),
            Spill::File(f) => BodyReader::File(f.into_inner().map_err(io::IntoInnerError::into_error)?),
        })
    }
}

pub(super) enum BodyReader {
    Memory(Vec<u8>),
    File(File),
}

impl BodyReader {
    pub fn get(&mut self, span: Span) -> io::Result<String> {
        let bytes = match self {
            BodyReader::Memory(v) => v[span.at as usize..span.at as usize + span.len].to_vec(),
            BodyReader::File(f) => {
                f.seek(io::SeekFrom::Start(span.at))?;
                let mut buf = vec![0u8; span.len];
                f.read_exact(&mut buf)?;
                buf
            }
        };
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// What every renderer counts across the tenants it is given.
#[derive(Default)]
pub(crate) struct Fleet {
    pub tenants: usize,
    pub summary: Summary,
    /// The first tenant's `partial` and the changes left out over all tenants (see
    /// [`crate::plan::Plan::partial`]).
    first_partial: Option<Partial>,
    left_out: usize,
    /// A refresh-only plan (`--refresh-only`): its counts are what it records and forgets, and it
    /// has no risks. Set before the first tenant is pushed.
    pub refresh_only: bool,
    /// A restore plan (`matih state restore`): the serial it restores. Set before the first tenant.
    pub restore_of: Option<u64>,
}

impl Fleet {
    pub fn push(&mut self, tenant: &TenantPlan) {
        self.tenants += 1;
        self.summary.absorb(tenant.summary());
        if let Some(p) = &tenant.partial {
            self.left_out += p.left_out;
            if self.first_partial.is_none() {
                self.first_partial = Some(p.clone());
            }
        }
    }

    pub fn partial(&self) -> Option<(&Partial, usize)> {
        self.first_partial.as_ref().map(|p| (p, self.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_spill_moves_to_a_file_past_its_limit_and_loses_nothing() {
        let mut spill = Spill::spooled_up_to(10);
        spill.write("0123456789").unwrap();
        assert!(matches!(spill, Spill::Spooled { .. }), "up to the limit, in memory");
        spill.write("a").unwrap();
        assert!(matches!(spill, Spill::File(_)), "past it, a file");
        spill.write("bc").unwrap();
        let mut out = Vec::new();
        spill.copy_to(&mut out).unwrap();
        assert_eq!(out, b"0123456789abc");

        let mut bodies = Bodies::new(Spill::spooled_up_to(4));
        let spans: Vec<Span> = ["abc", "defgh", "ij"].iter().map(|s| bodies.put(s).unwrap()).collect();
        let mut reader = bodies.reader().unwrap();
        assert!(matches!(reader, BodyReader::File(_)));
        assert_eq!(reader.get(spans[1]).unwrap(), "defgh");
        assert_eq!(reader.get(spans[0]).unwrap(), "abc");
        assert_eq!(reader.get(spans[2]).unwrap(), "ij");
    }
}
