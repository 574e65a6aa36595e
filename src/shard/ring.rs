//! The hash ring of sharded replicas (pure): which part of the 64-bit hash space each live
//! replica holds, and which objects fall into it.
//!
//! The hash is the API server's own (KEP-5866, `k8s.io/apimachinery/pkg/sharding.HashField`):
//! FNV-1a 64 over the field's string, here `metadata.uid`. Ranges are half-open,
//! `[start, end)`, over `[0, 2^64)`; `shardRange()` takes them as 16-digit `0x` hex literals,
//! with `0x10000000000000000` for 2^64.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One past the largest hash: 2^64.
pub const SPACE: u128 = 1 << 64;

/// FNV-1a 64 of `value` (the API server's shard hash).
pub fn hash(value: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    value.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Bits of the hash a shard bucket keeps: its top 8, so 256 buckets.
const BUCKET_SHIFT: u32 = 56;

/// The shard bucket of `uid`: the top 8 bits of its hash, as two lowercase hex digits (the
/// value of `naming::SHARD_BUCKET_LABEL` on a stack's children).
pub fn bucket_label(uid: &str) -> String {
    format!("{:02x}", hash(uid) >> BUCKET_SHIFT)
}

/// A half-open range `[start, end)` of the hash space; `end` may be 2^64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Inclusive lower bound.
    pub start: u128,
    /// Exclusive upper bound (at most [`SPACE`]).
    pub end: u128,
}

impl Range {
    /// The whole hash space.
    pub const ALL: Range = Range { start: 0, end: SPACE };

    /// Whether `hash` falls into the range.
    pub fn contains(&self, hash: u64) -> bool {
        let h = u128::from(hash);
        self.start <= h && h < self.end
    }

    /// Whether the two ranges share any hash.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The bucket labels ([`bucket_label`]) of every bucket sharing a hash with the range,
    /// ascending; more than the range holds at its edges, so a watch by bucket must still be
    /// filtered by [`holds`].
    pub fn bucket_labels(&self) -> Vec<String> {
        let width = 1u128 << BUCKET_SHIFT;
        (0u128..256)
            .filter(|b| self.overlaps(&Range { start: b * width, end: (b + 1) * width }))
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `shardSelector` of this range over `metadata.uid` (KEP-5866 syntax).
    pub fn selector(&self) -> String {
        format!("shardRange(object.metadata.uid, '{}', '{}')", hex(self.start), hex(self.end))
    }

    /// The form kept in a Lease annotation: `<start>-<end>` in the selector's hex.
    pub fn to_annotation(&self) -> String {
        format!("{}-{}", hex(self.start), hex(self.end))
    }

    /// Parses [`Range::to_annotation`]'s form; `None` for anything else (the annotation is
    /// written by other replicas, so it is untrusted: a bad one counts as holding nothing).
    pub fn from_annotation(text: &str) -> Option<Range> {
        let (start, end) = text.trim().split_once('-')?;
        let parse = |s: &str| {
            let digits = s.strip_prefix("0x")?;
            if digits.is_empty() || digits.len() > 17 {
                return None;
            }
            u128::from_str_radix(digits, 16).ok()
        };
        let (start, end) = (parse(start)?, parse(end)?);
        (start < end && end <= SPACE).then_some(Range { start, end })
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_annotation())
    }
}

fn hex(value: u128) -> String {
    if value >= SPACE { "0x10000000000000000".to_owned() } else { format!("0x{value:016x}") }
}

/// The range of member `me` when `members` (any order, duplicates ignored) split the space
/// into equal contiguous parts in sorted order; `None` when `me` is not a member.
pub fn range_of(members: &[String], me: &str) -> Option<Range> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let index = sorted.iter().position(|m| *m == me)? as u128;
    let n = sorted.len() as u128;
    Some(Range { start: SPACE * index / n, end: SPACE * (index + 1) / n })
}

/// The UID that decides where an object is reconciled: its controlling SolutionStack's for a
/// stack's child (so a stack and its children land on one replica), else its own.
pub fn key(meta: &ObjectMeta) -> Option<&str> {
    let owner = meta.owner_references.iter().flatten().find(|o| {
        o.controller == Some(true) && o.kind == "SolutionStack" && o.api_version.starts_with("citystack.io/")
    });
    owner.map(|o| o.uid.as_str()).or(meta.uid.as_deref())
}

/// Whether `range` holds the object with metadata `meta` (one without a UID: no).
pub fn holds(range: &Range, meta: &ObjectMeta) -> bool {
    key(meta).is_some_and(|uid| range.contains(hash(uid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_api_servers() {
        // Values from k8s.io/apimachinery/pkg/sharding's HashField (Go's hash/fnv New64a).
        assert_eq!(format!("{:016x}", hash("")), "cbf29ce484222325");
        assert_eq!(format!("{:016x}", hash("a")), "af63dc4c8601ec8c");
        assert_eq!(format!("{:016x}", hash("foobar")), "85944171f73967e8");
    }

    #[test]
    fn members_split_the_space_without_gaps_or_overlaps() {
        for n in 1..=7usize {
            let members: Vec<String> = (0..n).map(|i| format!("citystack-{i}")).collect();
            let mut ranges: Vec<Range> = members.iter().filter_map(|m| range_of(&members, m)).collect();
            ranges.sort_by_key(|r| r.start);
            assert_eq!(ranges.len(), n);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[n - 1].end, SPACE);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(!pair[0].overlaps(&pair[1]));
            }
        }
        assert_eq!(range_of(&["b".into(), "a".into(), "b".into()], "b"), Some(Range { start: SPACE / 2, end: SPACE }));
        assert_eq!(range_of(&["a".into()], "z"), None);
    }

    #[test]
    fn selectors_use_the_api_servers_hex_form() {
        let halves = [Range { start: 0, end: SPACE / 2 }, Range { start: SPACE / 2, end: SPACE }];
        assert_eq!(halves[0].selector(), "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')");
        assert_eq!(
            halves[1].selector(),
            "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
        );
        for range in halves {
            assert_eq!(Range::from_annotation(&range.to_annotation()), Some(range));
        }
    }

    #[test]
    fn untrusted_annotations_hold_nothing() {
        for bad in ["", "-", "0x1", "0x2-0x1", "0x0-0x20000000000000000", "1-2", "0x-0x1", "0xg-0x1", "0x0-0x1-0x2"] {
            assert_eq!(Range::from_annotation(bad), None, "{bad}");
        }
    }

    #[test]
    fn buckets_cover_the_range() {
        assert_eq!(Range::ALL.bucket_labels().len(), 256);
        let thirds: Vec<Range> =
            ["a", "b", "c"].iter().filter_map(|m| range_of(&["a".into(), "b".into(), "c".into()], m)).collect();
        for uid in ["", "a", "foobar", "2f1c6a7e-0b1d-4a43-9a57-3c2f8d7e91aa", "ffffffff"] {
            let holder: Vec<&Range> = thirds.iter().filter(|r| r.contains(hash(uid))).collect();
            assert_eq!(holder.len(), 1);
            assert!(holder[0].bucket_labels().contains(&bucket_label(uid)), "{uid}");
        }
        // A third's edges fall inside buckets 0x55 and 0xaa, which both neighbours watch.
        assert_eq!(thirds[0].bucket_labels().last().map(String::as_str), Some("55"));
        assert_eq!(thirds[1].bucket_labels().first().map(String::as_str), Some("55"));
        assert_eq!(thirds[1].bucket_labels().last().map(String::as_str), Some("aa"));
        assert_eq!(thirds[2].bucket_labels().len(), 86);
        assert_eq!(bucket_label("a"), "af");
    }

    #[test]
    fn a_child_follows_its_stack() {
        let meta = |uid: &str, owner: Option<(&str, &str)>| ObjectMeta {
            uid: Some(uid.into()),
            owner_references: owner.map(|(kind, owner_uid)| {
                vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "citystack.io/v1alpha1".into(),
                    kind: kind.into(),
                    name: "portal".into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        };
        assert_eq!(key(&meta("child", Some(("SolutionStack", "stack")))), Some("stack"));
        assert_eq!(key(&meta("standalone", None)), Some("standalone"));
        assert_eq!(key(&meta("odd", Some(("Other", "x")))), Some("odd"));
        let range = Range { start: u128::from(hash("stack")), end: u128::from(hash("stack")) + 1 };
        assert!(holds(&range, &meta("child", Some(("SolutionStack", "stack")))));
        assert!(!holds(&range, &ObjectMeta::default()));
    }
}
