//! RSA signature verification — RSASSA-PKCS1-v1_5 and RSASSA-PSS (RFC 8017) — on this
//! module's own modular arithmetic, for JWA's `RS*` and `PS*` algorithms (RFC 7518 §3.3, §3.5).
//!
//! ## Why its own arithmetic
//!
//! Verifying an RSA signature is a single modular exponentiation by the public exponent: for
//! e = 65537, 16 modular squarings and 1 multiplication. The `rsa` crate does much more work
//! on every call. Its `modpow` (from num-bigint-dig) is written for secret exponents: it
//! recomputes R² mod n by long division, builds a table of 16 powers, and walks the exponent's
//! whole 32-bit limb in 4-bit windows. That comes to 53 Montgomery products, where this
//! module needs 19 (17 for the exponent, 2 for conversions), and it allocates as it goes. In
//! V8 it measured about 6 times slower than this module on 2048-bit keys. This module
//! instead:
//! - uses 32-bit limbs with 64-bit products: Wasm has a native `i64.mul` but no 64×64→128-bit
//!   multiply, which would be emulated;
//! - does all per-key work when the key is loaded ([`RsaVerifier::new`]): the Montgomery
//!   constant −n⁻¹ mod 2³² and R² mod n;
//! - multiplies in Montgomery form (R = 2^(32·limbs)), so reducing a product costs one more
//!   multiplication pass and no division;
//! - uses square-and-multiply over the exponent's significant bits only;
//! - uses a dedicated squaring routine, which computes each cross product once (squarings are
//!   16 of the 17 steps for e = 65537);
//! - runs each exponentiation in fixed-capacity stack buffers. The decoded block is the only
//!   heap allocation in a verification.
//!
//! ## Why variable time is fine here
//!
//! Only public values go in: the key's modulus and exponent, and the signature and message of
//! a token that anyone holding it can read. Timing cannot leak a secret because there is
//! none, so the code branches on data freely (square-and-multiply over the exponent's bits,
//! early exits from comparisons). **Never use this for signing or decryption**: they use a
//! private exponent, which these timing differences would leak.
//!
//! ## What it checks
//!
//! - Keys: an odd modulus of 2048 to 8192 bits (leading zero bytes ignored), and an odd
//!   exponent with 3 ≤ e < 2³³. These bounds also guarantee e < n.
//! - Signatures: exactly [`RsaVerifier::modulus_len`] bytes and, as an integer, less than n
//!   (RFC 8017 §5.2.2 step 1). Without the second check, s + n would verify as well as s.
//! - PKCS#1 v1.5: the decoded block must equal, byte for byte, the only valid encoding
//!   (§9.2). Nothing is parsed, so BER variants, trailing garbage and short padding are
//!   rejected; accepting such encodings is what allowed the 2006 Bleichenbacher forgeries.
//! - PSS: EMSA-PSS-VERIFY (§9.1.2) with exactly JWA's parameters: MGF1 with the message's
//!   hash, a salt as long as the hash, trailer byte 0xbc.

use std::iter;

use sha2::{Digest, Sha256, Sha384, Sha512};

/// RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used".
const MIN_MODULUS_BITS: usize = 2048;
/// Bounds the work one token can cost and the stack buffers below; larger keys are not used.
const MAX_MODULUS_BITS: usize = 8192;
/// 32-bit limbs in the largest modulus: the capacity of the exponentiation buffers.
const MAX_LIMBS: usize = MAX_MODULUS_BITS / 32;
/// Exponents must be below 2³³. That covers those in use (65537, 3, the occasional 2³² + 1)
/// and caps an exponentiation at 33 squarings. It also keeps e below any accepted modulus.
const EXPONENT_LIMIT: u64 = 1 << 33;

/// A hash function of the JWA RSA algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaHash {
    Sha256,
    Sha384,
    Sha512,
}

impl RsaHash {
    fn output_len(self) -> usize {
        match self {
            RsaHash::Sha256 => 32,
            RsaHash::Sha384 => 48,
            RsaHash::Sha512 => 64,
        }
    }

    /// The DER `DigestInfo` that precedes the hash in a PKCS#1 v1.5 encoding, with the NULL
    /// parameters (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            RsaHash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            RsaHash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            RsaHash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// The hash of the concatenation of `parts`.
    fn digest(self, parts: &[&[u8]]) -> HashValue {
        fn run<D: Digest>(parts: &[&[u8]]) -> HashValue {
            let mut hasher = D::new();
            for part in parts {
                hasher.update(part);
            }
            let output = hasher.finalize();
            let mut value = HashValue {
                bytes: [0; 64],
                len: output.len(),
            };
            for (byte, output_byte) in value.bytes.iter_mut().zip(output.iter()) {
                *byte = *output_byte;
            }
            value
        }
        match self {
            RsaHash::Sha256 => run::<Sha256>(parts),
            RsaHash::Sha384 => run::<Sha384>(parts),
            RsaHash::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// A hash output on the stack: MGF1 computes one per 32 to 64 bytes of the block.
struct HashValue {
    bytes: [u8; 64],
    len: usize,
}

impl HashValue {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// An RSA public key prepared for verification at key-load time (all per-key work done here).
#[derive(Debug, Clone)]
pub struct RsaVerifier {
    /// n, least significant limb first; the most significant limb is non-zero.
    modulus: Vec<u32>,
    /// −n⁻¹ mod 2³²: the multiple of n that a Montgomery reduction step adds is this times
    /// the limb being cleared.
    negated_inverse: u32,
    /// R² mod n, the factor that takes a number into Montgomery form.
    r_squared: Vec<u32>,
    exponent: u64,
    modulus_bits: usize,
    /// Bytes of n without leading zeros: the exact signature length.
    modulus_len: usize,
}

impl RsaVerifier {
    /// `modulus` and `exponent` big-endian (leading zero bytes allowed and ignored).
    /// None unless: modulus odd, 2048..=8192 bits (bits counted after stripping leading
    /// zeros), exponent odd, 3 <= e < 2^33, e < n.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Option<RsaVerifier> {
        let significant_start = modulus.iter().position(|&byte| byte != 0)?;
        let modulus = modulus.get(significant_start..)?;
        let top_byte = *modulus.first()?;
        let bottom_byte = *modulus.last()?;
        let modulus_bits = modulus
            .len()
            .checked_mul(8)?
            .checked_sub(usize::try_from(top_byte.leading_zeros()).ok()?)?;
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&modulus_bits) || bottom_byte & 1 == 0 {
            return None;
        }
        // Leading zero bytes fold to nothing; a value of 2⁶⁴ or more overflows into `None`.
        let exponent = exponent.iter().try_fold(0_u64, |value, &byte| {
            value.checked_mul(256)?.checked_add(u64::from(byte))
        })?;
        // e < 2³³ ≤ 2²⁰⁴⁷ ≤ n, so e < n needs no separate check.
        if !(3..EXPONENT_LIMIT).contains(&exponent) || exponent & 1 == 0 {
            return None;
        }
        let limbs = limbs_from_be_bytes(modulus);
        let negated_inverse = negated_inverse(*limbs.first()?);
        let r_squared = r_squared_mod(&limbs, negated_inverse)?;
        Some(RsaVerifier {
            modulus: limbs,
            negated_inverse,
            r_squared,
            exponent,
            modulus_bits,
            modulus_len: modulus.len(),
        })
    }

    /// Modulus length in bytes (the exact JWA signature length).
    pub fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// Whether `signature` is, as an integer, below the modulus (RFC 8017 §5.2.2 step 1);
    /// `signature` must be [`RsaVerifier::modulus_len`] bytes long.
    pub fn is_below_modulus(&self, signature: &[u8]) -> bool {
        let mut buffer = [0_u32; MAX_LIMBS];
        self.representative(signature, &mut buffer).is_some()
    }

    /// The signature as limbs in `buffer`, if it is [`RsaVerifier::modulus_len`] bytes long
    /// and, as an integer, below n (RFC 8017 §5.2.2 step 1): s + n would verify as well as s.
    fn representative<'b>(
        &self,
        signature: &[u8],
        buffer: &'b mut [u32; MAX_LIMBS],
    ) -> Option<&'b mut [u32]> {
        if signature.len() != self.modulus_len {
            return None;
        }
        let limbs = buffer.get_mut(..self.modulus.len())?;
        // A signature of `modulus_len` bytes has exactly as many limbs as n.
        for (limb, chunk) in limbs.iter_mut().zip(signature.rchunks(4)) {
            *limb = limb_from_be_bytes(chunk);
        }
        less_than(limbs, &self.modulus).then_some(limbs)
    }

    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.2): s^e mod n must be exactly the one encoding of
    /// `message`'s hash.
    pub fn verify_pkcs1_v15(&self, hash: RsaHash, message: &[u8], signature: &[u8]) -> bool {
        let Some(encoded) = self.public_operation(signature) else {
            return false;
        };
        let digest_info = hash.digest_info_prefix();
        let hash_value = hash.digest(&[message]);
        // EM = 0x00 || 0x01 || PS || 0x00 || DigestInfo || H, with PS all 0xff.
        let Some(padding_len) = self
            .modulus_len
            .checked_sub(digest_info.len())
            .and_then(|len| len.checked_sub(hash_value.len))
            .and_then(|len| len.checked_sub(3))
        else {
            return false;
        };
        // §9.2 step 3 requires 8 bytes of padding; keys of 2048 bits or more always have them.
        if padding_len < 8 {
            return false;
        }
        let expected = [0x00, 0x01]
            .iter()
            .chain(iter::repeat_n(&0xff, padding_len))
            .chain(&[0x00])
            .chain(digest_info)
            .chain(hash_value.as_bytes());
        encoded.iter().eq(expected)
    }

    /// RSASSA-PSS as JWA (RFC 7518 §3.5) requires: MGF1 with the same hash, salt length ==
    /// hash length, trailer 0xbc.
    pub fn verify_pss(&self, hash: RsaHash, message: &[u8], signature: &[u8]) -> bool {
        let Some(mut block) = self.public_operation(signature) else {
            return false;
        };
        // RFC 8017 §8.1.2: emBits = modBits − 1. When modBits ≡ 1 (mod 8), EM is one byte
        // shorter than the block, and converting the integer to emLen bytes (step 2c) fails
        // unless the block's leading byte is zero.
        let Some(encoded_bits) = self.modulus_bits.checked_sub(1) else {
            return false;
        };
        let encoded_len = encoded_bits.div_ceil(8);
        let Some((leading, encoded)) = self
            .modulus_len
            .checked_sub(encoded_len)
            .and_then(|excess| block.split_at_mut_checked(excess))
        else {
            return false;
        };
        if leading.iter().any(|&byte| byte != 0) {
            return false;
        }
        emsa_pss_verify(hash, message, encoded, encoded_bits)
    }

    /// s^e mod n as `modulus_len` big-endian bytes, or `None` when the signature has the
    /// wrong length or is not less than n.
    fn public_operation(&self, signature: &[u8]) -> Option<Vec<u8>> {
        let modulus = self.modulus.as_slice();
        let limbs = modulus.len();
        let mut base_buffer = [0_u32; MAX_LIMBS];
        let mut power_buffer = [0_u32; MAX_LIMBS];
        let mut product_buffer = [0_u32; 2 * MAX_LIMBS];
        let base = self.representative(signature, &mut base_buffer)?;
        let power = power_buffer.get_mut(..limbs)?;
        let product = product_buffer.get_mut(..limbs.checked_mul(2)?)?;
        // base ← s·R mod n (Montgomery form), the factor of every multiplication below.
        multiply(product, base, &self.r_squared);
        montgomery_reduce(product, power, modulus, self.negated_inverse);
        copy_limbs(base, power);

        // Left-to-right square-and-multiply, starting after the exponent's top bit; the
        // exponent is public, so branching on its bits leaks nothing.
        let exponent_bits = u64::BITS.saturating_sub(self.exponent.leading_zeros());
        for position in (0..exponent_bits.saturating_sub(1)).rev() {
            square(product, power);
            montgomery_reduce(product, power, modulus, self.negated_inverse);
            if self.exponent.checked_shr(position).unwrap_or(0) & 1 == 1 {
                multiply(product, power, base);
                montgomery_reduce(product, power, modulus, self.negated_inverse);
            }
        }

        // Out of Montgomery form: reducing power·R as a double-width number divides out R.
        product.fill(0);
        copy_limbs(product, power);
        montgomery_reduce(product, power, modulus, self.negated_inverse);

        let leading_zero_bytes = limbs.checked_mul(4)?.checked_sub(self.modulus_len)?;
        Some(
            power
                .iter()
                .rev()
                .flat_map(|limb| limb.to_be_bytes())
                .skip(leading_zero_bytes)
                .collect(),
        )
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with sLen = hLen and MGF1 over `hash`. `encoded` is EM
/// (emLen bytes), decoded in place.
fn emsa_pss_verify(hash: RsaHash, message: &[u8], encoded: &mut [u8], encoded_bits: usize) -> bool {
    let hash_len = hash.output_len();
    let salt_len = hash_len;
    // Step 3: room for H, the salt, the 0x01 separator and the trailer.
    let Some(minimum_len) = hash_len
        .checked_add(salt_len)
        .and_then(|len| len.checked_add(2))
    else {
        return false;
    };
    let Some(unused_bits) = encoded
        .len()
        .checked_mul(8)
        .and_then(|bits| bits.checked_sub(encoded_bits))
    else {
        return false;
    };
    if encoded.len() < minimum_len {
        return false;
    }
    // Step 4.
    let Some((&mut trailer, rest)) = encoded.split_last_mut() else {
        return false;
    };
    if trailer != 0xbc {
        return false;
    }
    // Step 5: EM = maskedDB || H || 0xbc.
    let Some((data_block, hash_field)) = rest
        .len()
        .checked_sub(hash_len)
        .and_then(|data_len| rest.split_at_mut_checked(data_len))
    else {
        return false;
    };
    let hash_field: &[u8] = hash_field;
    // Step 6: the bits of EM beyond emBits must be zero. `unused_bits` is 0..=7.
    let top_mask = u8::MAX.checked_shr(u32::try_from(unused_bits).unwrap_or(u32::MAX));
    let Some(top_mask) = top_mask else {
        return false;
    };
    match data_block.first() {
        Some(&first) if first & !top_mask == 0 => {}
        _ => return false,
    }
    // Steps 7-8: DB = maskedDB xor MGF1(H, emLen − hLen − 1), computed in place.
    for (counter, chunk) in (0_u32..).zip(data_block.chunks_mut(hash_len)) {
        let mask = hash.digest(&[hash_field, &counter.to_be_bytes()]);
        for (byte, mask_byte) in chunk.iter_mut().zip(mask.as_bytes()) {
            *byte ^= mask_byte;
        }
    }
    // Step 9.
    if let Some(first) = data_block.first_mut() {
        *first &= top_mask;
    }
    // Steps 10-11: DB = PS (zeros) || 0x01 || salt.
    let Some((padding_and_separator, salt)) = data_block
        .len()
        .checked_sub(salt_len)
        .and_then(|len| data_block.split_at_checked(len))
    else {
        return false;
    };
    let Some((&separator, padding)) = padding_and_separator.split_last() else {
        return false;
    };
    if separator != 0x01 || padding.iter().any(|&byte| byte != 0) {
        return false;
    }
    // Steps 12-14: H = Hash(0x00 × 8 || Hash(M) || salt).
    let message_hash = hash.digest(&[message]);
    let expected = hash.digest(&[&[0; 8], message_hash.as_bytes(), salt]);
    expected.as_bytes() == hash_field
}

// ---------------------------------------------------------------------------------------------
// Multi-precision arithmetic on little-endian u32 limbs.
//
// Slices of one computation have fixed lengths: numbers have as many limbs as n, products twice
// as many. Loops zip them, so a length mismatch (a bug) yields a wrong number, which the padding
// comparison then rejects, rather than a trap.

/// n as limbs from its big-endian bytes.
fn limbs_from_be_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes.rchunks(4).map(limb_from_be_bytes).collect()
}

/// One limb from up to 4 big-endian bytes (the most significant chunk may be short).
fn limb_from_be_bytes(chunk: &[u8]) -> u32 {
    chunk
        .iter()
        .fold(0, |limb, &byte| limb.wrapping_shl(8) | u32::from(byte))
}

/// `a·b + c + d` as (low limb, high limb). It cannot overflow 64 bits: at most
/// (2³² − 1)² + 2·(2³² − 1) = 2⁶⁴ − 1.
#[inline(always)]
fn multiply_add(a: u32, b: u32, c: u32, d: u32) -> (u32, u32) {
    split(
        u64::from(a)
            .wrapping_mul(u64::from(b))
            .wrapping_add(u64::from(c))
            .wrapping_add(u64::from(d)),
    )
}

/// `a + b + c` as (low limb, carry); the carry is at most 2.
#[inline(always)]
fn add(a: u32, b: u32, c: u32) -> (u32, u32) {
    split(
        u64::from(a)
            .wrapping_add(u64::from(b))
            .wrapping_add(u64::from(c)),
    )
}

/// A double limb as (low limb, high limb).
#[inline(always)]
fn split(wide: u64) -> (u32, u32) {
    // Truncation is the point: the halves of the double limb.
    #[allow(clippy::cast_possible_truncation)]
    (wide as u32, wide.wrapping_shr(32) as u32)
}

/// `a < b`, for numbers of equal length.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (a_limb, b_limb) in a.iter().rev().zip(b.iter().rev()) {
        if a_limb != b_limb {
            return a_limb < b_limb;
        }
    }
    false
}

/// `a ← a − b`, wrapping modulo 2^(32·limbs); the caller knows when that is exact.
fn subtract_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = false;
    for (a_limb, &b_limb) in a.iter_mut().zip(b) {
        let (difference, first_borrow) = a_limb.overflowing_sub(b_limb);
        let (difference, second_borrow) = difference.overflowing_sub(u32::from(borrow));
        *a_limb = difference;
        borrow = first_borrow || second_borrow;
    }
}

fn copy_limbs(destination: &mut [u32], source: &[u32]) {
    for (destination_limb, &source_limb) in destination.iter_mut().zip(source) {
        *destination_limb = source_limb;
    }
}

/// `product ← a·b` (schoolbook); `product` has twice the limbs of `a` and `b`.
fn multiply(product: &mut [u32], a: &[u32], b: &[u32]) {
    product.fill(0);
    for (offset, &a_limb) in a.iter().enumerate() {
        let Some((row, above)) = product
            .get_mut(offset..)
            .and_then(|window| window.split_at_mut_checked(b.len()))
        else {
            return;
        };
        let mut carry = 0;
        for (limb, &b_limb) in row.iter_mut().zip(b) {
            (*limb, carry) = multiply_add(a_limb, b_limb, *limb, carry);
        }
        // Row `offset` is the first to reach limb `offset + len`, which is still zero.
        if let Some(top) = above.first_mut() {
            *top = carry;
        }
    }
}

/// `product ← a²`, computing each cross product aᵢ·aⱼ (i < j) once, then doubling and adding
/// the squares aᵢ²: about half the limb products of [`multiply`].
fn square(product: &mut [u32], a: &[u32]) {
    product.fill(0);
    // Row i adds aᵢ·aⱼ for j > i, starting at limb i + (i + 1) = 2i + 1.
    let mut rest = a;
    for start in (1_usize..).step_by(2) {
        let Some((&a_limb, higher)) = rest.split_first() else {
            break;
        };
        let Some((row, above)) = product
            .get_mut(start..)
            .and_then(|window| window.split_at_mut_checked(higher.len()))
        else {
            return;
        };
        let mut carry = 0;
        for (limb, &higher_limb) in row.iter_mut().zip(higher) {
            (*limb, carry) = multiply_add(a_limb, higher_limb, *limb, carry);
        }
        // Row i is the first to reach limb i + len, which is still zero.
        if let Some(top) = above.first_mut() {
            *top = carry;
        }
        rest = higher;
    }
    // product ← 2·product + Σ aᵢ²·2^(64i). The square fits in the product's limbs, so the
    // bit shifted out and the carry both end at zero.
    let mut shifted_out = 0;
    let mut carry = 0;
    for (pair, &a_limb) in product.chunks_exact_mut(2).zip(a) {
        let [low, high] = pair else {
            return;
        };
        let (square_low, square_high) = multiply_add(a_limb, a_limb, 0, 0);
        let doubled_low = low.wrapping_shl(1) | shifted_out;
        shifted_out = low.wrapping_shr(31);
        let doubled_high = high.wrapping_shl(1) | shifted_out;
        shifted_out = high.wrapping_shr(31);
        (*low, carry) = add(doubled_low, square_low, carry);
        (*high, carry) = add(doubled_high, square_high, carry);
    }
}

/// Montgomery reduction: `result ← product · R⁻¹ mod n`, fully reduced (< n), for
/// `product` < n·R. Each step adds the multiple of n that clears the lowest remaining limb;
/// after `limbs` steps the low half is zero and the high half is the result, below 2n.
/// `product` is overwritten.
fn montgomery_reduce(
    product: &mut [u32],
    result: &mut [u32],
    modulus: &[u32],
    negated_inverse: u32,
) {
    let limbs = modulus.len();
    // The carry out of the limb just above each step's window, added one step later.
    let mut pending_carry = 0;
    for offset in 0..limbs {
        let Some((window, above)) = product
            .get_mut(offset..)
            .and_then(|rest| rest.split_at_mut_checked(limbs))
        else {
            return;
        };
        let Some(&lowest) = window.first() else {
            return;
        };
        let factor = lowest.wrapping_mul(negated_inverse);
        let mut carry = 0;
        for (limb, &modulus_limb) in window.iter_mut().zip(modulus) {
            (*limb, carry) = multiply_add(factor, modulus_limb, *limb, carry);
        }
        if let Some(next) = above.first_mut() {
            (*next, pending_carry) = add(*next, carry, pending_carry);
        }
    }
    let Some(high_half) = product.get(limbs..) else {
        return;
    };
    copy_limbs(result, high_half);
    // The value is pending_carry·R + result < 2n; one subtraction brings it below n (and its
    // wrap-around cancels the pending carry).
    if pending_carry != 0 || !less_than(result, modulus) {
        subtract_in_place(result, modulus);
    }
}

/// −n₀⁻¹ mod 2³² for the lowest limb n₀ (odd).
fn negated_inverse(lowest_limb: u32) -> u32 {
    // Newton's iteration x ← x·(2 − n₀·x) doubles the number of correct low bits. x = 1 is
    // correct modulo 2 for odd n₀, so five steps give all 32.
    let mut inverse: u32 = 1;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2_u32.wrapping_sub(lowest_limb.wrapping_mul(inverse)));
    }
    inverse.wrapping_neg()
}

/// R² mod n, where R = 2^(32·limbs).
///
/// Write 32·limbs = t·2ᵏ with t odd. Doubling 1 modulo n, 32·limbs + t times, gives
/// 2^(32·limbs + t) mod n, which is 2ᵗ in Montgomery form. k Montgomery squarings then give
/// 2^(t·2ᵏ) = R in Montgomery form: R·R mod n. This takes about half the doublings of
/// doubling all the way to R².
fn r_squared_mod(modulus: &[u32], negated_inverse: u32) -> Option<Vec<u32>> {
    let limbs = modulus.len();
    let r_bits = limbs.checked_mul(32)?;
    let squarings = r_bits.trailing_zeros();
    let odd_part = r_bits.checked_shr(squarings)?;
    let mut value = vec![0_u32; limbs];
    *value.first_mut()? = 1;
    for _ in 0..r_bits.checked_add(odd_part)? {
        double_mod(&mut value, modulus);
    }
    let mut product = vec![0_u32; limbs.checked_mul(2)?];
    for _ in 0..squarings {
        square(&mut product, &value);
        montgomery_reduce(&mut product, &mut value, modulus, negated_inverse);
    }
    Some(value)
}

/// `value ← 2·value mod n`, for value < n.
fn double_mod(value: &mut [u32], modulus: &[u32]) {
    let mut shifted_out = 0;
    for limb in value.iter_mut() {
        let shifted = limb.wrapping_shl(1) | shifted_out;
        shifted_out = limb.wrapping_shr(31);
        *limb = shifted;
    }
    // 2·value < 2n: one subtraction suffices, and its wrap-around cancels the bit shifted out.
    if shifted_out != 0 || !less_than(value, modulus) {
        subtract_in_place(value, modulus);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use rsa::traits::PublicKeyParts as _;
    use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};

    use super::*;
    use crate::support::TestKey;

    const RSA_ALGORITHMS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

    /// Deterministic test randomness (xorshift64*): reproducible failures, no new dependency.
    struct TestRng(u64);

    impl TestRng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next_u64().to_be_bytes()[0]).collect()
        }

        /// A random odd number of exactly `bits` bits, big-endian.
        fn odd_modulus(&mut self, bits: usize) -> Vec<u8> {
            let mut bytes = self.bytes(bits.div_ceil(8));
            let top_bits = bits - (bytes.len() - 1) * 8;
            bytes[0] &= u8::MAX >> (8 - top_bits);
            bytes[0] |= 1 << (top_bits - 1);
            *bytes.last_mut().unwrap() |= 1;
            bytes
        }
    }

    impl rsa::rand_core::RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            TestRng::next_u64(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.copy_from_slice(&self.bytes(dest.len()));
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    // Test keys only: key generation wants a cryptographic generator, and determinism is the point.
    impl rsa::rand_core::CryptoRng for TestRng {}

    fn jwk_bytes(key: TestKey, member: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(key.jwk()[member].as_str().unwrap())
            .unwrap()
    }

    fn verifier(key: TestKey) -> RsaVerifier {
        RsaVerifier::new(&jwk_bytes(key, "n"), &jwk_bytes(key, "e")).unwrap()
    }

    fn reference_key(key: TestKey) -> RsaPublicKey {
        RsaPublicKey::new(
            BigUint::from_bytes_be(&jwk_bytes(key, "n")),
            BigUint::from_bytes_be(&jwk_bytes(key, "e")),
        )
        .unwrap()
    }

    fn hash_of(algorithm: &str) -> RsaHash {
        match &algorithm[2..] {
            "256" => RsaHash::Sha256,
            "384" => RsaHash::Sha384,
            _ => RsaHash::Sha512,
        }
    }

    fn ours(verifier: &RsaVerifier, algorithm: &str, message: &[u8], signature: &[u8]) -> bool {
        let hash = hash_of(algorithm);
        if algorithm.starts_with("PS") {
            verifier.verify_pss(hash, message, signature)
        } else {
            verifier.verify_pkcs1_v15(hash, message, signature)
        }
    }

    /// The `rsa` crate's verdict with the same JWA parameters.
    fn reference(key: &RsaPublicKey, algorithm: &str, message: &[u8], signature: &[u8]) -> bool {
        let hashed = hash_of(algorithm).digest(&[message]);
        let hashed = hashed.as_bytes();
        let result = match algorithm {
            "RS256" => key.verify(Pkcs1v15Sign::new::<Sha256>(), hashed, signature),
            "RS384" => key.verify(Pkcs1v15Sign::new::<Sha384>(), hashed, signature),
            "RS512" => key.verify(Pkcs1v15Sign::new::<Sha512>(), hashed, signature),
            "PS256" => key.verify(Pss::new::<Sha256>(), hashed, signature),
            "PS384" => key.verify(Pss::new::<Sha384>(), hashed, signature),
            _ => key.verify(Pss::new::<Sha512>(), hashed, signature),
        };
        result.is_ok()
    }

    fn big_endian(value: &BigUint, len: usize) -> Option<Vec<u8>> {
        let bytes = value.to_bytes_be();
        let padding = len.checked_sub(bytes.len())?;
        Some([vec![0; padding], bytes].concat())
    }

    #[test]
    fn fixture_signatures_verify_and_every_tampering_fails_as_in_the_rsa_crate() {
        for key in [TestKey::Rsa2048, TestKey::Rsa3072] {
            let verifier = verifier(key);
            let reference_key = reference_key(key);
            let n = reference_key.n().clone();
            let k = verifier.modulus_len();
            assert_eq!(k, reference_key.size());
            for algorithm in RSA_ALGORITHMS {
                let message = b"header.payload";
                let signature = key.sign(algorithm, message);
                let context = format!("{key:?} {algorithm}");
                assert!(ours(&verifier, algorithm, message, &signature), "{context}");
                assert!(
                    reference(&reference_key, algorithm, message, &signature),
                    "{context}"
                );

                let mut flipped_signature = signature.clone();
                flipped_signature[k / 2] ^= 0x10;
                let mut flipped_message = message.to_vec();
                flipped_message[3] ^= 0x01;
                let other_signature = key.sign(algorithm, b"another.message");
                let s = BigUint::from_bytes_be(&signature);
                let mut longer = vec![0];
                longer.extend_from_slice(&signature);

                let mut forgeries: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
                    ("flipped signature bit", message.to_vec(), flipped_signature),
                    ("flipped message bit", flipped_message, signature.clone()),
                    (
                        "other message's signature",
                        message.to_vec(),
                        other_signature,
                    ),
                    ("s = n", message.to_vec(), big_endian(&n, k).unwrap()),
                    (
                        "s = n - 1",
                        message.to_vec(),
                        big_endian(&(&n - 1_u32), k).unwrap(),
                    ),
                    ("s = 0", message.to_vec(), vec![0; k]),
                    (
                        "s = 1",
                        message.to_vec(),
                        big_endian(&BigUint::from(1_u32), k).unwrap(),
                    ),
                    ("one byte longer", message.to_vec(), longer),
                    (
                        "one byte shorter",
                        message.to_vec(),
                        signature[1..].to_vec(),
                    ),
                ];
                if let Some(s_plus_n) = big_endian(&(&s + &n), k) {
                    forgeries.push(("s + n", message.to_vec(), s_plus_n));
                }
                for (what, message, signature) in &forgeries {
                    assert!(
                        !ours(&verifier, algorithm, message, signature),
                        "{context}: {what}"
                    );
                    // rsa 0.9's `Pss` scheme skips the s < n check that its PKCS#1 v1.5 path
                    // makes, so it accepts s + n (hence the range check in `alg`).
                    if !(*what == "s + n" && algorithm.starts_with("PS")) {
                        assert!(
                            !reference(&reference_key, algorithm, message, signature),
                            "{context}: {what} (rsa crate)"
                        );
                    }
                }
                // The other padding and the other hashes must not accept the signature either.
                for other in RSA_ALGORITHMS
                    .into_iter()
                    .filter(|&other| other != algorithm)
                {
                    assert!(
                        !ours(&verifier, other, message, &signature),
                        "{context} as {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn pss_with_a_modulus_one_bit_over_a_byte_uses_an_encoding_one_byte_shorter() {
        // modBits = 2049 ≡ 1 (mod 8): emLen = k − 1 and the block's leading byte must be 0.
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        let private = rsa::RsaPrivateKey::new(&mut rng, 2049).unwrap();
        let public = private.to_public_key();
        let verifier =
            RsaVerifier::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
        assert_eq!(verifier.modulus_len(), 257);
        let message = b"header.payload";
        for (algorithm, hash) in [
            ("PS256", RsaHash::Sha256),
            ("PS384", RsaHash::Sha384),
            ("PS512", RsaHash::Sha512),
        ] {
            let hashed = hash.digest(&[message]);
            let scheme = match hash {
                RsaHash::Sha256 => Pss::new::<Sha256>(),
                RsaHash::Sha384 => Pss::new::<Sha384>(),
                RsaHash::Sha512 => Pss::new::<Sha512>(),
            };
            let signature = private
                .sign_with_rng(&mut rng, scheme, hashed.as_bytes())
                .unwrap();
            assert!(
                verifier.verify_pss(hash, message, &signature),
                "{algorithm}"
            );
            assert!(
                !verifier.verify_pss(hash, b"other", &signature),
                "{algorithm}"
            );
            assert!(
                !verifier.verify_pkcs1_v15(hash, message, &signature),
                "{algorithm}"
            );
        }
        for (algorithm, hash) in [("RS256", RsaHash::Sha256), ("RS512", RsaHash::Sha512)] {
            let hashed = hash.digest(&[message]);
            let scheme = match hash {
                RsaHash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
                _ => Pkcs1v15Sign::new::<Sha512>(),
            };
            let signature = private.sign(scheme, hashed.as_bytes()).unwrap();
            assert!(
                verifier.verify_pkcs1_v15(hash, message, &signature),
                "{algorithm}"
            );
            assert!(
                !verifier.verify_pss(hash, message, &signature),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn public_operation_matches_num_bigint_modpow() {
        let mut rng = TestRng(0x0123_4567_89ab_cdef);
        let random_33_bit_exponent = (rng.next_u64() & ((1 << 33) - 1)) | (1 << 32) | 1;
        let exponents = [
            3,
            65537,
            (1_u64 << 32) + 1,
            random_33_bit_exponent,
            EXPONENT_LIMIT - 1,
        ];
        // Sizes with a partial top limb, a partial top byte, modBits ≡ 1 (mod 8), the limits.
        for bits in [2048, 2049, 2056, 2072, 3072, 4095, 4096, 8192] {
            let modulus = rng.odd_modulus(bits);
            let n = BigUint::from_bytes_be(&modulus);
            for exponent in exponents {
                let verifier = RsaVerifier::new(&modulus, &exponent.to_be_bytes()).unwrap();
                let k = verifier.modulus_len();
                assert_eq!(k, bits.div_ceil(8));
                let mut bases: Vec<BigUint> = vec![
                    BigUint::from(0_u32),
                    BigUint::from(1_u32),
                    BigUint::from(2_u32),
                    &n - 1_u32,
                ];
                for _ in 0..2 {
                    bases.push(BigUint::from_bytes_be(&rng.bytes(k)) % &n);
                }
                for base in bases {
                    let signature = big_endian(&base, k).unwrap();
                    let expected = base.modpow(&BigUint::from(exponent), &n);
                    assert_eq!(
                        verifier.public_operation(&signature),
                        Some(big_endian(&expected, k).unwrap()),
                        "{bits}-bit modulus, e = {exponent}, s = {base:x}"
                    );
                }
            }
        }
    }

    #[test]
    fn new_refuses_keys_outside_the_accepted_range() {
        let mut rng = TestRng(42);
        let n2048 = rng.odd_modulus(2048);
        let e = [0x01, 0x00, 0x01];
        assert!(RsaVerifier::new(&n2048, &e).is_some());

        let mut even = n2048.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(RsaVerifier::new(&even, &e).is_none(), "even modulus");
        assert!(
            RsaVerifier::new(&rng.odd_modulus(2047), &e).is_none(),
            "2047 bits"
        );
        assert!(
            RsaVerifier::new(&rng.odd_modulus(8193), &e).is_none(),
            "8193 bits"
        );
        assert!(
            RsaVerifier::new(&rng.odd_modulus(8192), &e).is_some(),
            "8192 bits"
        );
        assert!(
            RsaVerifier::new(&jwk_bytes(TestKey::Rsa1024, "n"), &e).is_none(),
            "1024 bits"
        );
        assert!(
            RsaVerifier::new(&n2048, &[0x01, 0x00, 0x00]).is_none(),
            "even exponent"
        );
        assert!(RsaVerifier::new(&n2048, &[1]).is_none(), "e = 1");
        assert!(RsaVerifier::new(&n2048, &[0]).is_none(), "e = 0");
        assert!(RsaVerifier::new(&n2048, &[3]).is_some(), "e = 3");
        assert!(
            RsaVerifier::new(&n2048, &[1, 0, 0, 0, 1]).is_some(),
            "e = 2^32 + 1"
        );
        assert!(
            RsaVerifier::new(&n2048, &[1, 0xff, 0xff, 0xff, 0xff]).is_some(),
            "2^33 - 1"
        );
        assert!(
            RsaVerifier::new(&n2048, &[2, 0, 0, 0, 1]).is_none(),
            "e = 2^33 + 1"
        );
        assert!(RsaVerifier::new(&n2048, &n2048).is_none(), "e = n");
        assert!(RsaVerifier::new(&[], &e).is_none(), "empty modulus");
        assert!(RsaVerifier::new(&[0; 256], &e).is_none(), "zero modulus");
        assert!(RsaVerifier::new(&n2048, &[]).is_none(), "empty exponent");

        // Leading zeros are ignored on both, and do not count towards the length.
        let padded_modulus = [vec![0, 0, 0], n2048.clone()].concat();
        let padded = RsaVerifier::new(&padded_modulus, &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]).unwrap();
        assert_eq!(padded.modulus_len(), 256);
        assert!(RsaVerifier::new(&[vec![0; 10], rng.odd_modulus(2047)].concat(), &e).is_none());
    }

    /// Wycheproof's RSA vectors run through this module directly (tests/core/wycheproof.rs runs
    /// them through the filter's whole verification layer). No file system under
    /// wasm32-unknown-unknown.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    mod wycheproof {
        use std::path::PathBuf;

        use serde_json::Value;

        use super::super::*;

        fn vector_dir() -> PathBuf {
            std::env::var_os("WYCHEPROOF_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/wycheproof"),
                PathBuf::from,
            )
        }

        fn load(file: &str) -> Value {
            let path = vector_dir().join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
                panic!("Wycheproof vectors not found: {}: {error}", path.display())
            });
            serde_json::from_str(&text).unwrap()
        }

        fn hex(text: &str) -> Vec<u8> {
            (0..text.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
                .collect()
        }

        fn hash_named(name: &str) -> Option<RsaHash> {
            match name {
                "SHA-256" => Some(RsaHash::Sha256),
                "SHA-384" => Some(RsaHash::Sha384),
                "SHA-512" => Some(RsaHash::Sha512),
                _ => None,
            }
        }

        #[derive(Default, Debug)]
        struct Tally {
            valid_accepted: usize,
            invalid_rejected: usize,
            acceptable_rejected: usize,
            /// Groups with parameters JWA does not allow: every signature must be rejected.
            policy_rejected: usize,
            /// Failures, as "file #tcId: expected, got".
            disagreements: Vec<String>,
        }

        /// Runs `file`'s vectors; `verify` is None for a group JWA does not allow.
        fn run(
            file: &str,
            tally: &mut Tally,
            verify: impl Fn(&Value, &RsaVerifier, &[u8], &[u8]) -> Option<bool>,
        ) {
            let vectors = load(file);
            let mut seen = 0;
            for group in vectors["testGroups"].as_array().unwrap() {
                let key = &group["publicKey"];
                let verifier = RsaVerifier::new(
                    &hex(key["modulus"].as_str().unwrap()),
                    &hex(key["publicExponent"].as_str().unwrap()),
                )
                .unwrap_or_else(|| panic!("{file}: a key in range was refused"));
                for vector in group["tests"].as_array().unwrap() {
                    seen += 1;
                    let message = hex(vector["msg"].as_str().unwrap());
                    let signature = hex(vector["sig"].as_str().unwrap());
                    let expected = vector["result"].as_str().unwrap();
                    let id = vector["tcId"].as_u64().unwrap();
                    match (verify(group, &verifier, &message, &signature), expected) {
                        (None, _) => {
                            // Not a JWA parameter set: no PS* variant may accept it.
                            let accepted = [RsaHash::Sha256, RsaHash::Sha384, RsaHash::Sha512]
                                .into_iter()
                                .any(|hash| verifier.verify_pss(hash, &message, &signature));
                            if accepted {
                                tally
                                    .disagreements
                                    .push(format!("{file} #{id}: non-JWA parameters accepted"));
                            } else {
                                tally.policy_rejected += 1;
                            }
                        }
                        (Some(true), "valid") => tally.valid_accepted += 1,
                        (Some(false), "invalid") => tally.invalid_rejected += 1,
                        (Some(false), "acceptable") => tally.acceptable_rejected += 1,
                        (Some(verdict), expected) => tally.disagreements.push(format!(
                            "{file} #{id}: {expected}, verified {verdict} ({})",
                            vector["comment"]
                        )),
                    }
                }
            }
            assert_eq!(seen, vectors["numberOfTests"].as_u64().unwrap(), "{file}");
        }

        #[test]
        fn pkcs1_vectors_verify_exactly_the_valid_signatures() {
            let mut tally = Tally::default();
            for bits in [2048, 3072, 4096] {
                for hash in [256, 384, 512] {
                    run(
                        &format!("rsa_signature_{bits}_sha{hash}_test.json"),
                        &mut tally,
                        |group, verifier, message, signature| {
                            let hash = hash_named(group["sha"].as_str().unwrap()).unwrap();
                            Some(verifier.verify_pkcs1_v15(hash, message, signature))
                        },
                    );
                }
            }
            println!("PKCS#1 v1.5: {tally:?}");
            assert!(tally.disagreements.is_empty(), "{:#?}", tally.disagreements);
            assert!(tally.valid_accepted > 0 && tally.invalid_rejected > 0);
        }

        #[test]
        fn pss_vectors_verify_exactly_the_valid_jwa_signatures() {
            let mut tally = Tally::default();
            for file in [
                "rsa_pss_2048_sha256_mgf1_32_test.json",
                "rsa_pss_2048_sha384_mgf1_48_test.json",
                "rsa_pss_3072_sha256_mgf1_32_test.json",
                "rsa_pss_4096_sha256_mgf1_32_test.json",
                "rsa_pss_4096_sha384_mgf1_48_test.json",
                "rsa_pss_4096_sha512_mgf1_64_test.json",
                "rsa_pss_misc_test.json",
            ] {
                run(file, &mut tally, |group, verifier, message, signature| {
                    let hash = hash_named(group["sha"].as_str().unwrap())?;
                    let conforms = group["mgf"] == "MGF1"
                        && group["mgfSha"] == group["sha"]
                        && group["sLen"].as_u64() == Some(hash.output_len() as u64);
                    conforms.then(|| verifier.verify_pss(hash, message, signature))
                });
            }
            println!("PSS: {tally:?}");
            assert!(tally.disagreements.is_empty(), "{:#?}", tally.disagreements);
            assert!(
                tally.valid_accepted > 0 && tally.invalid_rejected > 0 && tally.policy_rejected > 0
            );
        }
    }
}
