//! `mempool.dat` in Bitcoin Core's format, so Core's loader and ours read each other's files:
//! a version (1 plain, 2 with an XOR key over the rest of the file), the transactions with the
//! time each entered and its fee delta, the fee deltas map and the unbroadcast set. Written
//! to a temporary file, synced and renamed: a crash leaves the old file or the new one whole.

use bitcoin::consensus::encode::{self, Decodable, Encodable, VarInt};
use bitcoin::{Transaction, Txid};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

/// The version Core reads without a key (MEMPOOL_DUMP_VERSION_NO_XOR_KEY).
pub const VERSION_PLAIN: u64 = 1;
/// The version whose body is XORed with a key (MEMPOOL_DUMP_VERSION, Core 28 on).
pub const VERSION_XOR: u64 = 2;
/// Entries a file may claim before it is judged corrupt (a 300 MB pool of the smallest
/// transactions is far fewer).
const MAX_ENTRIES: u64 = 10_000_000;

/// One transaction of the dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Dumped {
    /// The transaction.
    pub tx: Transaction,
    /// Unix seconds it entered the pool.
    pub time: i64,
    /// Its `prioritisetransaction` fee delta, satoshis.
    pub fee_delta: i64,
}

/// A whole `mempool.dat`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    /// Transactions, parents before children.
    pub txs: Vec<Dumped>,
    /// Fee deltas of transactions not (or not yet) in the pool.
    pub deltas: Vec<(Txid, i64)>,
    /// Transactions not yet seen relayed back (Core's unbroadcast set).
    pub unbroadcast: Vec<Txid>,
}

/// Why a dump could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The bytes are not a dump (truncated, corrupt, or a version we do not know).
    #[error("{path}: not a mempool dump: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What did not decode.
        why: String,
    },
}

/// XORs bytes with the key from the file position on, as Core's obfuscated streams do.
struct Xor<R> {
    inner: R,
    key: Vec<u8>,
    pos: usize,
}

impl<R: Read> Read for Xor<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.key.is_empty() {
            for b in &mut buf[..n] {
                *b ^= self.key[self.pos % self.key.len()];
                self.pos += 1;
            }
        }
        Ok(n)
    }
}

fn decode_body<R: bitcoin::io::BufRead + ?Sized>(r: &mut R) -> Result<Dump, encode::Error> {
    let count = u64::consensus_decode(r)?;
    if count > MAX_ENTRIES {
        return Err(encode::Error::ParseFailed("too many entries"));
    }
    let mut dump = Dump::default();
    for _ in 0..count {
        let tx = Transaction::consensus_decode(r)?;
        let time = i64::consensus_decode(r)?;
        let fee_delta = i64::consensus_decode(r)?;
        dump.txs.push(Dumped {
            tx,
            time,
            fee_delta,
        });
    }
    let deltas = VarInt::consensus_decode(r)?.0;
    for _ in 0..deltas.min(MAX_ENTRIES) {
        dump.deltas
            .push((Txid::consensus_decode(r)?, i64::consensus_decode(r)?));
    }
    let unbroadcast = VarInt::consensus_decode(r)?.0;
    for _ in 0..unbroadcast.min(MAX_ENTRIES) {
        dump.unbroadcast.push(Txid::consensus_decode(r)?);
    }
    Ok(dump)
}

/// What `pool` holds, parents first, as a dump.
pub fn of_pool(pool: &super::pool::Pool) -> Dump {
    Dump {
        txs: pool
            .in_dependency_order()
            .into_iter()
            .map(|e| Dumped {
                tx: (*e.tx).clone(),
                time: e.time,
                fee_delta: pool.delta(&e.tx.compute_txid()),
            })
            .collect(),
        deltas: pool
            .deltas()
            .filter(|(t, _)| pool.get(t).is_none())
            .map(|(t, d)| (*t, *d))
            .collect(),
        ..Dump::default()
    }
}

/// Reads a dump written by this node or by Bitcoin Core (version 1 or 2).
pub fn read(path: &Path) -> Result<Dump, DumpError> {
    let corrupt = |why: String| DumpError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|source| DumpError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut r = bitcoin::io::FromStd::new(BufReader::new(file));
    let version = u64::consensus_decode(&mut r).map_err(|e| corrupt(e.to_string()))?;
    let mut pos = 8;
    let key = match version {
        VERSION_PLAIN => Vec::new(),
        VERSION_XOR => {
            let key = Vec::<u8>::consensus_decode(&mut r).map_err(|e| corrupt(e.to_string()))?;
            pos += VarInt(key.len() as u64).size() + key.len();
            key
        }
        v => return Err(corrupt(format!("unknown version {v}"))),
    };
    let body = Xor {
        inner: r.into_inner(),
        key,
        pos,
    };
    let mut body = bitcoin::io::FromStd::new(BufReader::new(body));
    let dump = decode_body(&mut body).map_err(|e| corrupt(e.to_string()))?;
    let mut rest = [0u8; 1];
    if body
        .inner_mut()
        .read(&mut rest)
        .map_err(|e| corrupt(e.to_string()))?
        != 0
    {
        return Err(corrupt("bytes after the end".into()));
    }
    Ok(dump)
}

/// Writes `dump` to `path` (version 1, which every Core release with `mempool.dat` reads)
/// through a synced temporary file and a rename.
pub fn write(path: &Path, dump: &Dump) -> Result<(), DumpError> {
    let tmp = path.with_extension("dat.new");
    let io = |source| DumpError::Io {
        path: tmp.clone(),
        source,
    };
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = bitcoin::io::FromStd::new(BufWriter::new(file));
    let enc = |w: &mut bitcoin::io::FromStd<BufWriter<std::fs::File>>| -> bitcoin::io::Result<()> {
        VERSION_PLAIN.consensus_encode(w)?;
        (dump.txs.len() as u64).consensus_encode(w)?;
        for d in &dump.txs {
            d.tx.consensus_encode(w)?;
            d.time.consensus_encode(w)?;
            d.fee_delta.consensus_encode(w)?;
        }
        VarInt(dump.deltas.len() as u64).consensus_encode(w)?;
        for (txid, delta) in &dump.deltas {
            txid.consensus_encode(w)?;
            delta.consensus_encode(w)?;
        }
        VarInt(dump.unbroadcast.len() as u64).consensus_encode(w)?;
        for txid in &dump.unbroadcast {
            txid.consensus_encode(w)?;
        }
        bitcoin::io::Write::flush(w)
    };
    enc(&mut w).map_err(|e| io(e.into()))?;
    let file = w
        .into_inner()
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| DumpError::Io {
                path: dir.to_owned(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, TxIn, TxOut, Witness};

    fn tx(n: u8) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(
                    <Txid as bitcoin::hashes::Hash>::from_byte_array([n; 32]),
                    1,
                ),
                witness: Witness::from_slice(&[vec![n; 40]]),
                ..Default::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1234),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    fn sample() -> Dump {
        Dump {
            txs: vec![
                Dumped {
                    tx: tx(1),
                    time: 1_700_000_000,
                    fee_delta: 0,
                },
                Dumped {
                    tx: tx(2),
                    time: 1_700_000_100,
                    fee_delta: -5,
                },
            ],
            deltas: vec![(tx(3).compute_txid(), 1000)],
            unbroadcast: vec![tx(1).compute_txid()],
        }
    }

    #[test]
    fn a_written_dump_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.dat");
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), sample());
        assert!(!dir.path().join("mempool.dat.new").exists());
    }

    /// Core 28's default: version 2, an 8-byte key, the body XORed from the file position on.
    #[test]
    fn a_core_version_2_file_with_its_xor_key_reads() {
        let dir = tempfile::tempdir().unwrap();
        let plain_path = dir.path().join("plain.dat");
        write(&plain_path, &sample()).unwrap();
        let plain = std::fs::read(&plain_path).unwrap();
        let key = [0x5a, 0x01, 0xff, 0x10, 0x77, 0x00, 0x3c, 0x99];
        let mut v2 = Vec::new();
        v2.extend_from_slice(&VERSION_XOR.to_le_bytes());
        v2.push(8);
        v2.extend_from_slice(&key);
        let start = v2.len();
        for (i, b) in plain[8..].iter().enumerate() {
            v2.push(b ^ key[(start + i) % 8]);
        }
        let path = dir.path().join("mempool.dat");
        std::fs::write(&path, v2).unwrap();
        assert_eq!(read(&path).unwrap(), sample());
    }

    #[test]
    fn truncated_or_corrupt_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.dat");
        write(&path, &sample()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 20, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(
                matches!(read(&path), Err(DumpError::Corrupt { .. })),
                "cut at {cut}"
            );
        }
        let mut extra = whole.clone();
        extra.push(0);
        std::fs::write(&path, extra).unwrap();
        assert!(matches!(read(&path), Err(DumpError::Corrupt { .. })));
        let mut v9 = whole;
        v9[0] = 9;
        std::fs::write(&path, v9).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("unknown version 9"), "{err}");
    }
}
