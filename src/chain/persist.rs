//! The chain state on disk: block and undo data in the block files, index entries, coins and
//! the tip in the store. The write order is what makes a crash harmless: block files are
//! fsynced first, then one atomic store commit names them, together with the file lengths it
//! covers; on start anything past those lengths is cut off (see docs/architecture.md).

use super::chainstate::{BlockSource, ChainState, Update};
use super::header_tree::{HeaderTree, Validity};
use super::integrity::Integrity;
use super::params::Params;
use super::reject::StorageFault;
use super::utxo::{BlockChanges, Coin};
use super::utxo_cache::CoinSource;
use crate::pruning::policy::PruneSettings;
use crate::storage::block_files::{self, BlockFiles, FilePos, MAX_FILE_SIZE};
use crate::storage::{Flow, PruneReport, PruneTrigger, StorageError, Store, Table, WriteBatch};
use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::{Block, BlockHash, OutPoint, TxOut};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Persistence failures.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Store or files.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A read of block, undo or coin data failed.
    #[error(transparent)]
    Fault(#[from] StorageFault),
    /// Asked to stop (SIGTERM) during a reindex; the next start resumes it.
    #[error("stopped during the reindex; the next start resumes it")]
    Interrupted,
    /// Stored bytes that do not decode.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Details.
        detail: String,
    },
}

fn corrupt(what: &'static str, detail: impl ToString) -> PersistError {
    PersistError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// An index entry as stored: header, validity, data positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    /// The header.
    pub header: Header,
    /// Validity.
    pub validity: Validity,
    /// Block data position.
    pub block_pos: Option<FilePos>,
    /// Undo data position.
    pub undo_pos: Option<FilePos>,
}

impl IndexRecord {
    /// header(80) | validity(1) | has block(1) pos(16) | has undo(1) pos(16) | reason.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serialize(&self.header);
        let (tag, reason) = match &self.validity {
            Validity::Header => (0u8, ""),
            Validity::Valid => (1, ""),
            Validity::Invalid(r) => (2, r.as_str()),
            Validity::InvalidParent => (3, ""),
        };
        v.push(tag);
        for pos in [self.block_pos, self.undo_pos] {
            v.push(u8::from(pos.is_some()));
            v.extend_from_slice(&pos.map(|p| p.encode()).unwrap_or([0; 16]));
        }
        v.extend_from_slice(reason.as_bytes());
        v
    }

    /// Inverse of `encode`.
    pub fn decode(b: &[u8]) -> Result<IndexRecord, PersistError> {
        if b.len() < 80 + 1 + 17 + 17 {
            return Err(corrupt("index entry", format!("{} bytes", b.len())));
        }
        let header: Header = deserialize(&b[..80]).map_err(|e| corrupt("index header", e))?;
        let reason = String::from_utf8_lossy(&b[115..]).into_owned();
        let validity = match b[80] {
            0 => Validity::Header,
            1 => Validity::Valid,
            2 => Validity::Invalid(reason),
            3 => Validity::InvalidParent,
            t => return Err(corrupt("index validity", t)),
        };
        let pos = |at: usize| {
            (b[at] == 1)
                .then(|| FilePos::decode(&b[at + 1..at + 17]))
                .flatten()
        };
        Ok(IndexRecord {
            header,
            validity,
            block_pos: pos(81),
            undo_pos: pos(98),
        })
    }
}

/// txid (32) | vout big-endian (4): key order is Core's database order.
pub fn coin_key(op: &OutPoint) -> Vec<u8> {
    let mut k = op.txid.to_byte_array().to_vec();
    k.extend_from_slice(&op.vout.to_be_bytes());
    k
}

fn coin_value(c: &Coin) -> Vec<u8> {
    let mut v = ((c.height << 1) | u32::from(c.coinbase))
        .to_le_bytes()
        .to_vec();
    v.extend(serialize(&c.output));
    v
}

/// The outpoint a coin key names, if it is one.
fn outpoint_of(k: &[u8]) -> Option<OutPoint> {
    let txid = bitcoin::Txid::from_slice(k.get(..32)?).ok()?;
    let vout = u32::from_be_bytes(k.get(32..36)?.try_into().ok()?);
    Some(OutPoint::new(txid, vout))
}

/// A coin as the store holds it: the body and the first 4 bytes of sha256d(key || body), so a
/// record damaged on disk is found when read instead of served.
fn stored_coin_value(op: &OutPoint, c: &Coin) -> Vec<u8> {
    let mut v = coin_value(c);
    let sum = coin_checksum(&coin_key(op), &v);
    v.extend_from_slice(&sum);
    v
}

fn coin_checksum(key: &[u8], body: &[u8]) -> [u8; 4] {
    let mut e = sha256d::Hash::engine();
    e.input(key);
    e.input(body);
    let h = sha256d::Hash::from_engine(e).to_byte_array();
    [h[0], h[1], h[2], h[3]]
}

/// Inverse of `stored_coin_value`, checking the checksum.
fn decode_stored_coin(k: &[u8], v: &[u8]) -> Result<(OutPoint, Coin), PersistError> {
    let Some(split) = v.len().checked_sub(4) else {
        return Err(corrupt("coin", "bad length"));
    };
    let (body, sum) = v.split_at(split);
    if coin_checksum(k, body) != sum {
        return Err(corrupt(
            "coin",
            format!(
                "record {} fails its checksum",
                bitcoin::hex::DisplayHex::to_lower_hex_string(k)
            ),
        ));
    }
    decode_coin(k, body)
}

fn decode_coin(k: &[u8], v: &[u8]) -> Result<(OutPoint, Coin), PersistError> {
    if k.len() != 36 || v.len() < 4 {
        return Err(corrupt("coin", "bad length"));
    }
    let txid = bitcoin::Txid::from_slice(&k[..32]).map_err(|e| corrupt("coin key", e))?;
    let vout = u32::from_be_bytes([k[32], k[33], k[34], k[35]]);
    let code = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
    let output: TxOut = deserialize(&v[4..]).map_err(|e| corrupt("coin value", e))?;
    Ok((
        OutPoint::new(txid, vout),
        Coin {
            output,
            height: code >> 1,
            coinbase: code & 1 == 1,
        },
    ))
}

fn encode_undo(c: &BlockChanges) -> Vec<u8> {
    let mut v = Vec::new();
    for list in [&c.spent, &c.created] {
        v.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for (op, coin) in list {
            v.extend(coin_key(op));
            let val = coin_value(coin);
            v.extend_from_slice(&(val.len() as u32).to_le_bytes());
            v.extend(val);
        }
    }
    v.extend_from_slice(&c.fees.to_le_bytes());
    v
}

fn decode_undo(b: &[u8]) -> Result<BlockChanges, PersistError> {
    let mut cur = Cursor::new(b);
    let mut take = |n: usize| -> Result<Vec<u8>, PersistError> {
        let at = cur.position() as usize;
        let s = b
            .get(at..at + n)
            .ok_or_else(|| corrupt("undo", "truncated"))?;
        cur.set_position((at + n) as u64);
        Ok(s.to_vec())
    };
    let mut lists = Vec::new();
    for _ in 0..2 {
        let n = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("undo", "len"))?);
        let mut list = Vec::new();
        for _ in 0..n {
            let k = take(36)?;
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("undo", "len"))?);
            let v = take(len as usize)?;
            list.push(decode_coin(&k, &v)?);
        }
        lists.push(list);
    }
    let fees = u64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt("undo", "fees"))?);
    let created = lists.pop().unwrap_or_default();
    let spent = lists.pop().unwrap_or_default();
    Ok(BlockChanges {
        created,
        spent,
        fees,
    })
}

/// Core's undo checksum: sha256d(block hash || undo data).
fn undo_checksum(hash: &BlockHash, undo: &[u8]) -> [u8; 32] {
    let mut e = sha256d::Hash::engine();
    e.input(&hash.to_byte_array());
    e.input(undo);
    sha256d::Hash::from_engine(e).to_byte_array()
}

/// The header hash covers only the header: the merkle root and the witness commitment are the
/// checksum of the transactions (Core's blk format has no checksum of its own).
fn intact(block: &Block) -> bool {
    let txids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    if super::merkle::root_with_mutation(&txids).0 != block.header.merkle_root.to_byte_array() {
        return false;
    }
    let Some(cb) = block.txdata.first() else {
        return false;
    };
    match super::block_check::witness_commitment_index(cb) {
        Some(idx) => {
            let reserved = cb.input[0].witness.nth(0).unwrap_or_default();
            cb.output[idx].script_pubkey.as_bytes()[6..38]
                == super::block_check::witness_commitment(block, reserved)
        }
        None => true,
    }
}

/// Reads block and undo data through the index (any thread).
struct FileSource {
    store: Arc<dyn Store>,
    dir: PathBuf,
    magic: [u8; 4],
    /// Where damage found by a read is recorded.
    integrity: Arc<Integrity>,
}

impl FileSource {
    /// Records `fault` as damage of `kind` and returns it.
    fn damaged(&self, kind: &'static str, fault: StorageFault) -> StorageFault {
        self.integrity.found(kind, &fault.detail);
        fault
    }
}

impl FileSource {
    /// The index entry of `hash`; `None` when it has none.
    fn record(&self, hash: &BlockHash) -> Result<Option<IndexRecord>, StorageFault> {
        let raw = self
            .store
            .get(Table::BlockIndex, &hash.to_byte_array())
            .map_err(|e| StorageFault::new("block index", e))?;
        raw.map(|r| IndexRecord::decode(&r))
            .transpose()
            .map_err(|e| {
                self.damaged(
                    "index",
                    StorageFault::new("block index", format!("entry of {hash}: {e}")),
                )
            })
    }
}

impl FileSource {
    /// Bytes of `hash`'s block record as `read` takes them (all, or a prefix), with its file;
    /// `None` when it is not stored or was pruned meanwhile. A failed read is damage: whatever
    /// is wrong with the record, the header is known and valid, so a peer can give us the
    /// block again.
    fn read_block(
        &self,
        hash: &BlockHash,
        read: impl FnOnce(&Path, FilePos) -> Result<Vec<u8>, StorageError>,
    ) -> Result<Option<(Vec<u8>, PathBuf)>, StorageFault> {
        let Some(pos) = self.record(hash)?.and_then(|r| r.block_pos) else {
            return Ok(None);
        };
        let path = block_files::file_path(&self.dir, "blk", pos.file);
        match read(&path, pos) {
            Ok(bytes) => Ok(Some((bytes, path))),
            Err(_) if self.pruned_meanwhile(hash, &path)? => Ok(None),
            Err(e) => Err(self.bad_block(hash, format!("{hash}: {e}"))),
        }
    }

    /// Records damage to `hash`'s block data and returns the fault.
    fn bad_block(&self, hash: &BlockHash, detail: String) -> StorageFault {
        self.integrity.corrupt_block(*hash, &detail);
        StorageFault::new("block", detail)
    }

    /// After a failed read: whether the block was pruned since its position was looked up
    /// (the file is gone and the index no longer has it), which is no damage.
    fn pruned_meanwhile(&self, hash: &BlockHash, path: &Path) -> Result<bool, StorageFault> {
        Ok(!path.exists() && self.record(hash)?.and_then(|r| r.block_pos).is_none())
    }

    /// A stored block's first 80 bytes must be a header hashing to its key.
    fn check_header(
        &self,
        hash: &BlockHash,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(), StorageFault> {
        let header: Option<bitcoin::block::Header> =
            bytes.get(..80).and_then(|h| deserialize(h).ok());
        if header.is_some_and(|h| h.block_hash() == *hash) {
            return Ok(());
        }
        Err(self.bad_block(
            hash,
            format!(
                "{hash} in {}: the stored header is not the block's",
                path.display()
            ),
        ))
    }
}

impl CoinSource for FileSource {
    fn coin(&self, op: &OutPoint) -> Result<Option<Coin>, StorageFault> {
        let key = coin_key(op);
        let Some(v) = self
            .store
            .get(Table::Coins, &key)
            .map_err(|e| StorageFault::new("coin", e))?
        else {
            return Ok(None);
        };
        decode_stored_coin(&key, &v)
            .map(|(_, c)| Some(c))
            .map_err(|e| {
                let detail = format!("{op}: {e}");
                self.integrity.corrupt_coin(*op, &detail);
                StorageFault::new("coin", detail)
            })
    }

    fn for_each_coin(&self, f: &mut dyn FnMut(OutPoint, Coin) -> Flow) -> Result<(), StorageFault> {
        let mut bad = None;
        self.store
            .scan(Table::Coins, &mut |k, v| match decode_stored_coin(k, v) {
                Ok((op, c)) => f(op, c),
                Err(e) => {
                    let op = outpoint_of(k);
                    let detail = format!("{}: {e}", op.map(|o| o.to_string()).unwrap_or_default());
                    if let Some(op) = op {
                        self.integrity.corrupt_coin(op, &detail);
                    }
                    bad = Some(StorageFault::new("coin", detail));
                    Flow::Break(())
                }
            })
            .map_err(|e| StorageFault::new("UTXO set", e))?;
        bad.map_or(Ok(()), Err)
    }
}

impl BlockSource for FileSource {
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageFault> {
        let whole =
            |path: &Path, pos| block_files::read_record(path, self.magic, pos, 0).map(|r| r.0);
        let Some((bytes, path)) = self.read_block(hash, whole)? else {
            return Ok(None);
        };
        let block: Block = deserialize(&bytes)
            .map_err(|e| self.bad_block(hash, format!("{hash} in {}: {e}", path.display())))?;
        if block.block_hash() != *hash || !intact(&block) {
            return Err(self.bad_block(hash, format!("{hash} in {} is corrupt", path.display())));
        }
        Ok(Some(block))
    }

    fn raw_block(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<super::raw_block::RawBlock>, StorageFault> {
        let whole =
            |path: &Path, pos| block_files::read_record(path, self.magic, pos, 0).map(|r| r.0);
        let Some((bytes, path)) = self.read_block(hash, whole)? else {
            return Ok(None);
        };
        // Checked as a decoded block would be (header hash, merkle root, witness commitment),
        // in one pass over the bytes without decoding them.
        self.check_header(hash, &bytes, &path)?;
        let summary = super::raw_block::check(&bytes)
            .map_err(|e| self.bad_block(hash, format!("{hash} in {}: {e}", path.display())))?;
        Ok(Some(super::raw_block::RawBlock { bytes, summary }))
    }

    fn tx_count(&self, hash: &BlockHash) -> Result<Option<usize>, StorageFault> {
        // The header, then the count as a CompactSize of at most 9 bytes.
        let prefix = |path: &Path, pos| block_files::read_prefix(path, self.magic, pos, 80 + 9);
        let Some((prefix, path)) = self.read_block(hash, prefix)? else {
            return Ok(None);
        };
        self.check_header(hash, &prefix, &path)?;
        let (count, _): (bitcoin::VarInt, _) =
            bitcoin::consensus::encode::deserialize_partial(&prefix[80..]).map_err(|e| {
                self.bad_block(
                    hash,
                    format!("{hash} in {}: transaction count: {e}", path.display()),
                )
            })?;
        Ok(Some(count.0 as usize))
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockChanges>, StorageFault> {
        let Some(pos) = self.record(hash)?.and_then(|r| r.undo_pos) else {
            return Ok(None);
        };
        let path = block_files::file_path(&self.dir, "rev", pos.file);
        // Whatever is wrong with the record, it can be rebuilt from the block.
        let bad = |detail: String| {
            self.integrity.corrupt_undo(*hash, &detail);
            StorageFault::new("undo data", detail)
        };
        let (bytes, sum) = block_files::read_record(&path, self.magic, pos, 32)
            .map_err(|e| bad(format!("{hash}: {e}")))?;
        if sum != undo_checksum(hash, &bytes) {
            return Err(bad(format!(
                "{hash} in {} fails its checksum",
                path.display()
            )));
        }
        decode_undo(&bytes)
            .map(Some)
            .map_err(|e| bad(format!("{hash}: {e}")))
    }
}

/// A reindex logs its progress every this many blocks.
const REINDEX_PROGRESS_EVERY: u64 = 500;

/// Blocks below the tip whose block and undo records are read back at start.
const START_CHECK_BLOCKS: u32 = 6;

/// Per block file: the highest block height with data in it, and its size.
#[derive(Debug, Clone, Copy, Default)]
struct FileInfo {
    max_height: u32,
    bytes: u64,
}

/// The writer side: owns the file series and turns chain changes into durable commits.
pub struct ChainDb {
    store: Arc<dyn Store>,
    blk: BlockFiles,
    rev: BlockFiles,
    positions: HashMap<BlockHash, (Option<FilePos>, Option<FilePos>)>,
    /// Per series (0 `blk`, 1 `rev`): every file on disk, by number.
    files: [BTreeMap<u32, FileInfo>; 2],
    /// Height of the last committed tip.
    tip_height: u32,
    /// Highest block height pruned so far (`prune_height` in the store).
    prune_height: Option<u32>,
    /// How block files are pruned.
    pruning: PruneSettings,
    /// Damage found in stored data, here and by reads.
    integrity: Arc<Integrity>,
}

fn has_block_data(blocks_dir: &Path) -> bool {
    std::fs::metadata(block_files::file_path(blocks_dir, "blk", 0)).is_ok_and(|m| m.len() > 0)
}

fn read_pos(store: &dyn Store, key: &str) -> Result<(u32, u64), PersistError> {
    match store.get_meta(key)? {
        None => Ok((0, 0)),
        Some(v) if v.len() == 12 => Ok((
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
            u64::from_le_bytes(
                v[4..12]
                    .try_into()
                    .map_err(|_| corrupt(key_name(key), "len"))?,
            ),
        )),
        Some(v) => Err(corrupt(key_name(key), format!("{} bytes", v.len()))),
    }
}

fn key_name(key: &str) -> &'static str {
    if key == "blk_pos" {
        "blk_pos"
    } else {
        "rev_pos"
    }
}

/// Moves what the `blk` files hold past `committed` into `to` as a series of its own (the part
/// of the committed file past its length, and every later file), for the reindex to reconnect.
/// Returns how many files it wrote there.
fn move_tail(
    blocks: &Path,
    to: &Path,
    committed: (u32, u64),
    magic: [u8; 4],
) -> Result<usize, PersistError> {
    let err = |op| move |e: std::io::Error| StorageError::io(op, e);
    let series = BlockFiles::open_readonly(blocks, "blk", magic);
    let mut numbers = series.numbers();
    numbers.sort();
    let mut out = BlockFiles::open_readonly(to, "blk", magic).numbers().len() as u32;
    std::fs::create_dir_all(to).map_err(err("create"))?;
    let start = out;
    for n in numbers.into_iter().filter(|n| *n >= committed.0) {
        let path = series.path(n);
        let target = block_files::file_path(to, "blk", out);
        if n == committed.0 {
            let bytes = std::fs::read(&path).map_err(err("read"))?;
            if bytes.len() as u64 <= committed.1 {
                continue;
            }
            std::fs::write(&target, &bytes[committed.1 as usize..]).map_err(err("write"))?;
        } else {
            std::fs::rename(&path, &target).map_err(err("rename"))?;
        }
        out += 1;
    }
    Ok((out - start) as usize)
}

/// Every file of a series with its size (heights are filled in from the index).
fn list_files(files: &BlockFiles) -> BTreeMap<u32, FileInfo> {
    files
        .numbers()
        .into_iter()
        .map(|n| {
            let bytes = files.file_size(n);
            (
                n,
                FileInfo {
                    max_height: 0,
                    bytes,
                },
            )
        })
        .collect()
}

fn encode_pos((file, len): (u32, u64)) -> Vec<u8> {
    let mut v = file.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v
}

mod prune;
pub mod rebuild;

impl ChainDb {
    /// Damage found in stored data so far (health and metrics read it).
    pub fn integrity(&self) -> Arc<Integrity> {
        self.integrity.clone()
    }

    /// Start-up check: every block and undo file the index names exists and is long enough for
    /// the records in it (a deleted or truncated file is found before the node reports ready).
    fn check_files(&self) {
        let mut needed: BTreeMap<(usize, u32), (u64, usize)> = BTreeMap::new();
        for (bp, up) in self.positions.values() {
            for (series, pos, trailer) in [(0, bp, 0u64), (1, up, 32)] {
                if let Some(p) = pos {
                    let e = needed.entry((series, p.file)).or_default();
                    e.0 = e.0.max(p.offset + u64::from(p.len) + trailer);
                    e.1 += 1;
                }
            }
        }
        for ((series, file), (end, records)) in needed {
            let files = if series == 0 { &self.blk } else { &self.rev };
            let name = files.path(file);
            match self.files[series].get(&file) {
                None => self.integrity.found(
                    "block_file",
                    &format!("{} is missing ({records} records)", name.display()),
                ),
                Some(f) if f.bytes < end => self.integrity.found(
                    "block_file",
                    &format!(
                        "{} is {} bytes, records reach {end}: it was cut short",
                        name.display(),
                        f.bytes
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// Opens the files (cutting uncommitted tails) and loads the chain state; a fresh store
    /// starts at genesis, which is persisted at once.
    pub fn open(
        dir: &Path,
        store: Arc<dyn Store>,
        params: Params,
    ) -> Result<(ChainDb, ChainState), PersistError> {
        Self::open_with_file_size(dir, store, params, MAX_FILE_SIZE)
    }

    /// `open` with a smaller block-file size (tests of file rollover and pruning).
    pub fn open_with_file_size(
        dir: &Path,
        store: Arc<dyn Store>,
        params: Params,
        max_file_size: u64,
    ) -> Result<(ChainDb, ChainState), PersistError> {
        Self::open_until(dir, store, params, max_file_size, &|| false, &|_| {})
    }

    /// `open_with_file_size` that tells `progress` what a reindex is doing and gives it up
    /// between blocks once `stop` says so (a SIGTERM during start-up); the next start resumes it.
    pub fn open_until(
        dir: &Path,
        store: Arc<dyn Store>,
        params: Params,
        max_file_size: u64,
        stop: &dyn Fn() -> bool,
        progress: &dyn Fn(String),
    ) -> Result<(ChainDb, ChainState), PersistError> {
        let blocks_dir = dir.join("blocks");
        // A store without a tip beside existing block files (a fallback to a new backend, or a
        // deleted store): rebuild from the files instead of truncating them.
        let reindex_dir = dir.join("blocks.reindex");
        if store.get_meta("tip_hash")?.is_none()
            && has_block_data(&blocks_dir)
            && !reindex_dir.exists()
        {
            log::warn!("store is empty but block files exist: reindexing from them");
            std::fs::rename(&blocks_dir, &reindex_dir)
                .map_err(|e| StorageError::io("rename", e))?;
        }
        // After a restore, the block files hold whole blocks past the restored store's commit:
        // they are moved out to be reconnected rather than cut off.
        let marker = dir.join(crate::storage::backup::RESTORE_MARKER);
        if marker.exists() {
            let magic = params.chain.bitcoin_network().magic().to_bytes();
            let committed = read_pos(&*store, "blk_pos")?;
            let moved = move_tail(&blocks_dir, &reindex_dir, committed, magic)?;
            log::warn!(files = moved; "restored store: blocks past its tip are reconnected from the block files");
        }
        let (mut db, mut cs) = Self::load(dir, store, params, max_file_size)?;
        if reindex_dir.exists() {
            progress("reindex from block files: starting".into());
            db.reindex(&mut cs, &reindex_dir, stop, progress)?;
            std::fs::remove_dir_all(&reindex_dir).map_err(|e| StorageError::io("remove", e))?;
        }
        if marker.exists() {
            std::fs::remove_file(&marker).map_err(|e| StorageError::io("remove", e))?;
        }
        Ok((db, cs))
    }

    /// Submits every block found in `old` (file order; children waiting for parents), persisting
    /// as it goes. Interrupted, it resumes on the next start: known blocks are duplicates.
    fn reindex(
        &mut self,
        cs: &mut ChainState,
        old: &Path,
        stop: &dyn Fn() -> bool,
        progress: &dyn Fn(String),
    ) -> Result<(), PersistError> {
        let magic = cs.params().chain.bitcoin_network().magic().to_bytes();
        let files = BlockFiles::open_readonly(old, "blk", magic);
        let now = crate::clock::unix_now();
        let mut waiting: HashMap<BlockHash, Vec<Block>> = HashMap::new();
        let mut count = 0u64;
        for n in 0.. {
            if !files.path(n).exists() {
                break;
            }
            for (_, bytes) in files.scan(n)? {
                let Ok(block) = deserialize::<Block>(&bytes) else {
                    log::warn!(
                        "reindex: undecodable record in {} skipped",
                        files.path(n).display()
                    );
                    continue;
                };
                // Every block so far is persisted: stopping here loses nothing.
                if stop() {
                    log::info!(blocks = count, height = cs.tip().1; "reindex stopped; the next start resumes it");
                    return Err(PersistError::Interrupted);
                }
                let mut queue = vec![block];
                while let Some(block) = queue.pop() {
                    let hash = block.block_hash();
                    match cs.submit_block(block.clone(), now) {
                        Ok((_, updates)) => {
                            self.persist(cs, &updates)?;
                            count += 1;
                            if count % REINDEX_PROGRESS_EVERY == 0 {
                                let height = cs.tip().1;
                                log::info!(blocks = count, height = height; "reindex: {count} blocks");
                                progress(format!(
                                    "reindex from block files: {count} blocks, height {height}"
                                ));
                            }
                            queue.extend(waiting.remove(&hash).unwrap_or_default());
                        }
                        Err(r) if r.reason == "prev-blk-not-found" => {
                            waiting
                                .entry(block.header.prev_blockhash)
                                .or_default()
                                .push(block);
                        }
                        Err(r) => {
                            log::warn!("reindex: block {hash} rejected: {r}");
                            self.persist(cs, &[])?;
                        }
                    }
                }
            }
        }
        log::info!(blocks = count, height = cs.tip().1; "reindex from block files complete");
        Ok(())
    }

    fn load(
        dir: &Path,
        store: Arc<dyn Store>,
        params: Params,
        max_file_size: u64,
    ) -> Result<(ChainDb, ChainState), PersistError> {
        let magic = params.chain.bitcoin_network().magic().to_bytes();
        let blocks_dir = dir.join("blocks");
        let blk = BlockFiles::open(
            &blocks_dir,
            "blk",
            magic,
            max_file_size,
            read_pos(&*store, "blk_pos")?,
        )?;
        let rev = BlockFiles::open(
            &blocks_dir,
            "rev",
            magic,
            max_file_size,
            read_pos(&*store, "rev_pos")?,
        )?;
        let integrity = Arc::new(Integrity::default());
        for files in [&blk, &rev] {
            if let Some(d) = files.damage() {
                integrity.found("block_file", d);
            }
        }
        let source = || {
            Arc::new(FileSource {
                store: store.clone(),
                dir: blocks_dir.clone(),
                magic,
                integrity: integrity.clone(),
            })
        };
        let files = [list_files(&blk), list_files(&rev)];
        let mut db = ChainDb {
            store: store.clone(),
            blk,
            rev,
            positions: HashMap::new(),
            files,
            tip_height: 0,
            prune_height: match store.get_meta("prune_height")? {
                None => None,
                Some(v) => {
                    Some(u32::from_le_bytes(v.as_slice().try_into().map_err(
                        |_| corrupt("prune_height", format!("{} bytes", v.len())),
                    )?))
                }
            },
            pruning: PruneSettings::DISABLED,
            integrity: integrity.clone(),
        };
        let Some(tip) = store.get_meta("tip_hash")? else {
            let mut cs = ChainState::new(params);
            // Genesis is stored like any block, then served from the files.
            let genesis = cs.tip().0;
            let mut fresh = ChainState::from_parts(cs.tree().clone(), vec![genesis], source(), 0);
            fresh.adopt_block(
                cs.load_block(&genesis)?
                    .ok_or_else(|| corrupt("genesis", "missing"))?,
            );
            cs = fresh;
            db.persist(&mut cs, &[])?;
            return Ok((db, cs));
        };
        let tip = BlockHash::from_slice(&tip).map_err(|e| corrupt("tip", e))?;
        let mut items = Vec::new();
        let mut bad = None;
        store.scan(Table::BlockIndex, &mut |k, v| match (
            BlockHash::from_slice(k),
            IndexRecord::decode(v),
        ) {
            // A flipped bit in the stored header would otherwise load a different block
            // under this hash.
            (Ok(h), Ok(r)) if r.header.block_hash() != h => {
                bad = Some(corrupt(
                    "index entry",
                    format!("{h}: its header hashes to {}", r.header.block_hash()),
                ));
                Flow::Break(())
            }
            (Ok(h), Ok(r)) => {
                db.positions.insert(h, (r.block_pos, r.undo_pos));
                items.push((r.header, r.validity, r.block_pos.is_some()));
                Flow::Continue(())
            }
            (_, Err(e)) => {
                bad = Some(e);
                Flow::Break(())
            }
            (Err(e), _) => {
                bad = Some(corrupt("index key", e));
                Flow::Break(())
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let tree = HeaderTree::from_persisted(params, items);
        let tip_entry = tree
            .get(&tip)
            .ok_or_else(|| corrupt("tip", "not in the index"))?;
        db.tip_height = tip_entry.height;
        db.check_files();
        for (h, (bp, up)) in &db.positions {
            let height = tree.get(h).map_or(0, |e| e.height);
            for (series, pos) in [(0, bp), (1, up)] {
                if let Some(p) = pos {
                    let info = db.files[series].entry(p.file).or_default();
                    info.max_height = info.max_height.max(height);
                }
            }
        }
        let mut active = vec![tip; tip_entry.height as usize + 1];
        let mut h = tip;
        for height in (0..=tip_entry.height).rev() {
            active[height as usize] = h;
            h = tree.get(&h).map(|e| e.header.prev_blockhash).unwrap_or(h);
        }
        let utxo_count = match store.get_meta("utxo_count")? {
            Some(v) if v.len() == 8 => u64::from_le_bytes(v.try_into().unwrap_or([0; 8])),
            _ => {
                let mut n = 0u64;
                store.scan(Table::Coins, &mut |_, _| {
                    n += 1;
                    Flow::Continue(())
                })?;
                n
            }
        };
        let mut cs = ChainState::from_parts(tree, active, source(), utxo_count);
        // A fresh load has nothing unwritten.
        cs.take_dirty_entries();
        // Quick check before ready: the last blocks and their undo data read back whole (a
        // fault is recorded in `integrity` by the read itself; pruned data is simply absent).
        let tip_height = cs.tip().1;
        for h in tip_height.saturating_sub(START_CHECK_BLOCKS - 1)..=tip_height {
            if let Some(hash) = cs.hash_at(h) {
                let _ = cs.load_block(&hash);
                if h > 0 {
                    let _ = cs.load_undo(&hash);
                }
            }
        }
        Ok((db, cs))
    }

    /// Makes `updates` (and any newly stored blocks and changed index entries) durable and
    /// evicts what was written from memory: `prepare` then `commit` on one thread.
    pub fn persist(&mut self, cs: &mut ChainState, updates: &[Update]) -> Result<(), PersistError> {
        let job = prepare(cs, updates)?;
        let written = job.written();
        self.commit(&job)?;
        cs.evict(&written);
        cs.utxo_committed(job.utxo_gen);
        Ok(())
    }

    /// Writes a job: block and undo bytes first, fsynced, then one atomic commit naming them.
    /// On failure (a full disk) the files are cut back to where they were, so the same job can
    /// be committed again once the cause is gone.
    pub fn commit(&mut self, job: &PersistJob) -> Result<(), PersistError> {
        let marks = [self.blk.position(), self.rev.position()];
        let mut written = Vec::new();
        match self.write(job, &mut written) {
            Ok(()) => {
                self.tip_height = job.tip.1;
                for (series, file, height) in written {
                    let info = self.files[series].entry(file).or_default();
                    info.max_height = info.max_height.max(height);
                }
                for (series, mark) in marks.into_iter().enumerate() {
                    let files = if series == 0 { &self.blk } else { &self.rev };
                    let end = files.position();
                    for n in mark.0..=end.0 {
                        let bytes = if n == end.0 {
                            end.1
                        } else {
                            files.file_size(n)
                        };
                        self.files[series].entry(n).or_default().bytes = bytes;
                    }
                }
                Ok(())
            }
            Err(e) => {
                for (files, mark) in [(&mut self.blk, marks[0]), (&mut self.rev, marks[1])] {
                    if let Err(undo) = files.rollback(mark) {
                        log::error!("cannot cut block files back after a failed write: {undo}");
                    }
                }
                Err(e)
            }
        }
    }

    /// The writes of `commit`; `written` collects (series, file, height) of each record.
    fn write(
        &mut self,
        job: &PersistJob,
        written: &mut Vec<(usize, u32, u32)>,
    ) -> Result<(), PersistError> {
        let height = |h: &BlockHash| job.heights.get(h).copied().unwrap_or(0);
        for (h, bytes) in &job.new_blocks {
            let pos = self.blk.append(bytes, &[])?;
            self.positions.entry(*h).or_default().0 = Some(pos);
            written.push((0, pos.file, height(h)));
        }
        let mut batch = WriteBatch::default();
        for change in &job.changes {
            match change {
                Change::Connected(hash, changes) => {
                    let undo = encode_undo(changes);
                    let pos = self.rev.append(&undo, &undo_checksum(hash, &undo))?;
                    self.positions.entry(*hash).or_default().1 = Some(pos);
                    written.push((1, pos.file, height(hash)));
                    for (op, _) in &changes.spent {
                        batch.delete(Table::Coins, coin_key(op));
                    }
                    for (op, c) in &changes.created {
                        batch.put(Table::Coins, coin_key(op), stored_coin_value(op, c));
                    }
                }
                Change::RepairedCoins(coins) => {
                    for (op, c) in coins {
                        batch.put(Table::Coins, coin_key(op), stored_coin_value(op, c));
                    }
                }
                Change::RewrittenUndo(hash, changes) => {
                    let undo = encode_undo(changes);
                    let pos = self.rev.append(&undo, &undo_checksum(hash, &undo))?;
                    self.positions.entry(*hash).or_default().1 = Some(pos);
                    written.push((1, pos.file, height(hash)));
                }
                Change::Disconnected(_, changes) => {
                    for (op, _) in &changes.created {
                        batch.delete(Table::Coins, coin_key(op));
                    }
                    for (op, c) in &changes.spent {
                        batch.put(Table::Coins, coin_key(op), stored_coin_value(op, c));
                    }
                }
            }
        }
        self.blk.sync()?;
        self.rev.sync()?;
        for (h, header, validity) in &job.entries {
            let (block_pos, undo_pos) = self.positions.get(h).copied().unwrap_or_default();
            let rec = IndexRecord {
                header: *header,
                validity: validity.clone(),
                block_pos,
                undo_pos,
            };
            batch.put(Table::BlockIndex, h.to_byte_array().to_vec(), rec.encode());
        }
        batch.put_meta("tip_hash", job.tip.0.to_byte_array().to_vec());
        batch.put_meta("tip_height", job.tip.1.to_string().into_bytes());
        batch.put_meta("utxo_count", job.utxo_count.to_le_bytes().to_vec());
        batch.put_meta("blk_pos", encode_pos(self.blk.position()));
        batch.put_meta("rev_pos", encode_pos(self.rev.position()));
        self.store.apply(&batch)?;
        Ok(())
    }
}

impl crate::storage::writer::Committer for ChainDb {
    type Job = PersistJob;
    type Error = PersistError;

    fn commit(&mut self, job: &PersistJob) -> Result<(), PersistError> {
        ChainDb::commit(self, job)
    }

    fn recover(&mut self) -> Result<(), PersistError> {
        Ok(self.store.reopen()?)
    }

    fn prune(&mut self, trigger: PruneTrigger) -> Result<Option<PruneReport>, PersistError> {
        ChainDb::prune(self, trigger)
    }

    fn prune_height(&self) -> Option<u32> {
        self.prune_height
    }

    fn block_files_bytes(&self) -> u64 {
        ChainDb::block_files_bytes(self)
    }

    fn damage(&self) -> Option<String> {
        self.integrity.last()
    }
}

/// One UTXO-set change to persist, with the data to apply it.
#[derive(Debug, Clone)]
pub enum Change {
    /// Block connected: its changes (also its undo data).
    Connected(BlockHash, BlockChanges),
    /// Block disconnected: its undo data, to revert.
    Disconnected(BlockHash, BlockChanges),
    /// Undo data rebuilt for a connected block (its record was damaged): written again, the
    /// UTXO set untouched.
    RewrittenUndo(BlockHash, BlockChanges),
    /// Coin records rebuilt from the blocks (theirs were damaged): written again.
    RepairedCoins(Vec<(OutPoint, Coin)>),
}

/// Everything a commit needs, detached from the chain state so the writer thread can own it.
#[derive(Debug, Clone)]
pub struct PersistJob {
    /// Blocks to append to the block files.
    pub new_blocks: Vec<(BlockHash, Vec<u8>)>,
    /// UTXO changes in order.
    pub changes: Vec<Change>,
    /// Index entries to (re)write.
    pub entries: Vec<(BlockHash, Header, Validity)>,
    /// The tip after this job.
    pub tip: (BlockHash, u32),
    /// The UTXO cache generation whose changes this job carries.
    pub utxo_gen: u64,
    /// Heights of the blocks whose block or undo data this job writes.
    pub heights: HashMap<BlockHash, u32>,
    /// Unspent outputs after this job.
    pub utxo_count: u64,
}

impl PersistJob {
    /// Hashes whose block or undo data this job writes (evictable from memory once committed).
    pub fn written(&self) -> Vec<BlockHash> {
        let mut v: Vec<BlockHash> = self.new_blocks.iter().map(|(h, _)| *h).collect();
        v.extend(self.changes.iter().filter_map(|c| match c {
            Change::Connected(h, _) | Change::RewrittenUndo(h, _) => Some(*h),
            Change::Disconnected(..) | Change::RepairedCoins(_) => None,
        }));
        v
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_blocks.is_empty() && self.changes.is_empty() && self.entries.is_empty()
    }
}

/// Collects from the chain state what `updates` and its other changes require on disk.
pub fn prepare(cs: &mut ChainState, updates: &[Update]) -> Result<PersistJob, PersistError> {
    // Changes a failed submission made on its way (a partial reorg) come first.
    let mut all = cs.take_unreported();
    all.extend_from_slice(updates);
    let updates = &all[..];
    let new_hashes = cs.take_new_blocks();
    let mut new_blocks = Vec::with_capacity(new_hashes.len());
    for h in &new_hashes {
        let block = cs.load_block(h)?.ok_or_else(|| corrupt("new block", h))?;
        new_blocks.push((*h, serialize(&block)));
    }
    let mut changes = Vec::with_capacity(updates.len());
    for u in updates {
        changes.push(match u {
            Update::Connected { hash, changes, .. } => Change::Connected(*hash, changes.clone()),
            Update::Disconnected { hash, changes, .. } => {
                Change::Disconnected(*hash, changes.clone())
            }
        });
    }
    let repaired = cs.take_repaired_coins();
    if !repaired.is_empty() {
        changes.push(Change::RepairedCoins(repaired));
    }
    let rewritten = cs.take_rebuilt_undo();
    for (h, undo) in &rewritten {
        changes.push(Change::RewrittenUndo(*h, undo.clone()));
    }
    let mut dirty = cs.take_dirty_entries();
    dirty.extend(new_hashes.iter().copied());
    dirty.extend(rewritten.iter().map(|(h, _)| *h));
    dirty.extend(updates.iter().map(|u| match u {
        Update::Connected { hash, .. } | Update::Disconnected { hash, .. } => *hash,
    }));
    dirty.sort();
    dirty.dedup();
    let entries = dirty
        .iter()
        .filter_map(|h| cs.tree().get(h).map(|e| (*h, e.header, e.validity.clone())))
        .collect();
    let heights = new_hashes
        .iter()
        .chain(rewritten.iter().map(|(h, _)| h))
        .chain(updates.iter().filter_map(|u| match u {
            Update::Connected { hash, .. } => Some(hash),
            Update::Disconnected { .. } => None,
        }))
        .filter_map(|h| cs.tree().get(h).map(|e| (*h, e.height)))
        .collect();
    Ok(PersistJob {
        new_blocks,
        changes,
        entries,
        tip: cs.tip(),
        utxo_gen: cs.seal_utxo_generation(),
        utxo_count: cs.utxo_count(),
        heights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Chain;
    use crate::storage::redb_store::RedbStore;

    #[test]
    fn index_records_and_undo_round_trip() {
        let params = Params::for_chain(Chain::Regtest);
        let rec = IndexRecord {
            header: params.genesis.header,
            validity: Validity::Invalid("bad-cb-amount".into()),
            block_pos: Some(FilePos {
                file: 1,
                offset: 8,
                len: 285,
            }),
            undo_pos: None,
        };
        assert_eq!(IndexRecord::decode(&rec.encode()).unwrap(), rec);
        let coin = Coin {
            output: params.genesis.txdata[0].output[0].clone(),
            height: 7,
            coinbase: true,
        };
        let op = OutPoint::new(params.genesis.txdata[0].compute_txid(), 3);
        let changes = BlockChanges {
            created: vec![(op, coin.clone())],
            spent: vec![(op, coin)],
            fees: 42,
        };
        assert_eq!(decode_undo(&encode_undo(&changes)).unwrap(), changes);
        assert!(decode_undo(&encode_undo(&changes)[..10]).is_err());
    }

    #[test]
    fn a_block_with_changed_transaction_bytes_is_not_intact() {
        let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
        let (mut block, _) = cs
            .mine(
                bitcoin::ScriptBuf::from_bytes(vec![0x51]),
                vec![],
                1_700_000_000,
            )
            .unwrap();
        assert!(intact(&block));
        block.txdata[0].output[0].value = bitcoin::Amount::from_sat(1);
        assert!(!intact(&block));
    }

    #[test]
    fn a_fresh_store_starts_at_genesis_and_reopens_there() {
        let dir = std::env::temp_dir().join(format!("bllvm-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let params = Params::for_chain(Chain::Regtest);
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir).unwrap());
        let (_, cs) = ChainDb::open(&dir, store.clone(), params.clone()).unwrap();
        assert_eq!(cs.tip().1, 0);
        drop(cs);
        let (_, cs) = ChainDb::open(&dir, store, params.clone()).unwrap();
        assert_eq!(cs.tip().0, params.genesis.block_hash());
        assert_eq!(cs.load_block(&cs.tip().0).unwrap(), Some(params.genesis));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
