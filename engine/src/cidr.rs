//! IPv4 CIDR blocks: parsing and exact aggregation (`cidrmerge()`).
//!
//! Aggregation never widens: the result covers exactly the addresses of the input, as the fewest
//! blocks that can (adjacent and contained blocks merged; a range that is not one aligned block
//! stays several). `100.0.0.0/14` + `100.4.0.0/14` → `100.0.0.0/13`; `10.0.0.0/16` +
//! `10.1.0.0/16` + `10.2.0.0/16` → `10.0.0.0/15`, `10.2.0.0/16`.

/// An IPv4 block: its first address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    /// The network address (host bits zero).
    pub addr: u32,
    /// Prefix length, 0 to 32.
    pub len: u8,
}

impl Block {
    /// Parses `A.B.C.D/N` (a bare address is a /32). Host bits are cleared: `10.0.0.1/8` is the
    /// block `10.0.0.0/8`, the addresses the text denotes.
    pub fn parse(text: &str) -> Result<Block, String> {
        let bad = || format!("`{text}` is not an IPv4 CIDR block (A.B.C.D/N)");
        let (ip, len) = match text.trim().split_once('/') {
            Some((ip, n)) => (ip, n.parse::<u8>().ok().filter(|n| *n <= 32).ok_or_else(bad)?),
            None => (text.trim(), 32),
        };
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
        Ok(Block { addr: u32::from(ip) & mask(len), len })
    }

    /// The first and last address, inclusive.
    pub fn range(&self) -> (u64, u64) {
        let start = u64::from(self.addr);
        (start, start + (1u64 << (32 - u32::from(self.len))) - 1)
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.len)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

/// The fewest blocks covering exactly the addresses of `blocks`, in address order.
pub fn merge(blocks: &[Block]) -> Vec<Block> {
    let mut ranges: Vec<(u64, u64)> = blocks.iter().map(Block::range).collect();
    ranges.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match joined.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => joined.push((s, e)),
        }
    }
    joined.into_iter().flat_map(|(s, e)| split(s, e)).collect()
}

/// An inclusive address range as the fewest aligned blocks: the largest block that starts at
/// `s` and fits, then the rest.
fn split(mut s: u64, e: u64) -> Vec<Block> {
    let mut out = Vec::new();
    while s <= e {
        let align = if s == 0 { 32 } else { s.trailing_zeros().min(32) };
        let fits = (e - s + 1).ilog2();
        let bits = align.min(fits);
        out.push(Block { addr: s as u32, len: (32 - bits) as u8 });
        s += 1u64 << bits;
    }
    out
}

/// `merge` over text: the blocks as `A.B.C.D/N`, or the first that does not parse.
pub fn merge_text<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let blocks: Vec<Block> = items.into_iter().map(Block::parse).collect::<Result<_, _>>()?;
    Ok(merge(&blocks).iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(items: &[&str]) -> Vec<String> {
        merge_text(items.iter().copied()).unwrap()
    }

    #[test]
    fn adjacent_and_contained_blocks_merge_and_nothing_widens() {
        assert_eq!(merged(&["100.0.0.0/14", "100.4.0.0/14"]), ["100.0.0.0/13"]);
        assert_eq!(merged(&["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]), ["10.0.0.0/15", "10.2.0.0/16"]);
        // Adjacent but not siblings: 10.1/16 and 10.2/16 are not one aligned block.
        assert_eq!(merged(&["10.1.0.0/16", "10.2.0.0/16"]), ["10.1.0.0/16", "10.2.0.0/16"]);
        assert_eq!(merged(&["10.0.0.0/8", "10.4.0.0/14", "10.0.0.0/8"]), ["10.0.0.0/8"]);
        assert_eq!(merged(&["192.168.0.1", "192.168.0.0/32"]), ["192.168.0.0/31"]);
        assert_eq!(merged(&["0.0.0.0/1", "128.0.0.0/1"]), ["0.0.0.0/0"]);
        assert_eq!(merged(&["255.255.255.255/32"]), ["255.255.255.255/32"]);
        assert_eq!(merged(&[]), Vec::<String>::new());
        assert_eq!(merged(&["10.0.0.7/8"]), ["10.0.0.0/8"], "host bits name the same block");
    }

    #[test]
    fn what_is_not_a_block_is_named() {
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/8", "ten", "10.0.0.0/-1", ""] {
            let e = merge_text([bad]).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("A.B.C.D/N"), "{e}");
        }
    }

    /// A small deterministic generator (xorshift), so a failure reproduces from its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Whether an address is in any of the blocks.
    fn covered(blocks: &[Block], a: u64) -> bool {
        blocks.iter().any(|b| {
            let (s, e) = b.range();
            (s..=e).contains(&a)
        })
    }

    /// Property: for random sets of blocks (clustered in a small space so they touch and nest),
    /// the merged set covers exactly the same addresses (every block edge probed, and points
    /// between them), its blocks are disjoint and in order, and no two of them could merge
    /// (no sibling pair): so it is the fewest.
    #[test]
    fn merging_covers_exactly_the_same_addresses_with_the_fewest_blocks() {
        for seed in 1..=2000u64 {
            let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let n = (r.next() % 12) as usize;
            let input: Vec<Block> = (0..n)
                .map(|_| {
                    let len = 20 + (r.next() % 13) as u8;
                    let addr = 0x0A00_0000 | ((r.next() as u32) & 0x0000_3FFF) << 4;
                    Block { addr: addr & mask(len), len }
                })
                .collect();
            let out = merge(&input);
            let mut probes: Vec<u64> = input
                .iter()
                .chain(&out)
                .flat_map(|b| {
                    let (s, e) = b.range();
                    [s.saturating_sub(1), s, (s + e) / 2, e, e + 1]
                })
                .collect();
            probes.extend((0..64).map(|_| 0x0A00_0000 + r.next() % 0x4_0000));
            for a in probes {
                assert_eq!(covered(&input, a), covered(&out, a), "seed {seed}: address {a:#x} of {input:?} → {out:?}");
            }
            for b in &out {
                assert_eq!(b.addr & !mask(b.len), 0, "seed {seed}: {b:?} is not a CIDR block (host bits set)");
            }
            for w in out.windows(2) {
                assert!(w[0].range().1 < w[1].range().0, "seed {seed}: {out:?} overlaps or is unordered");
                let sibling = w[0].len == w[1].len
                    && w[0].len > 0
                    && (w[0].addr ^ w[1].addr) == 1u32 << (32 - u32::from(w[0].len));
                assert!(!sibling, "seed {seed}: {} and {} should have merged", w[0], w[1]);
            }
            let total: u64 = out.iter().map(|b| b.range().1 - b.range().0 + 1).sum();
            let again = merge(&out);
            assert_eq!(again, out, "seed {seed}: merging is idempotent");
            assert!(total > 0 || input.is_empty());
        }
    }
}
