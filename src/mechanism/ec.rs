//! Elliptic curves on the host: the named curves offered (P-256, P-384), their
//! `CKA_EC_PARAMS` and `CKA_EC_POINT` encodings, ECDSA verification with the public key,
//! and shaping the TPM's ECDSA output into PKCS#11's r‖s. The TPM does the signing; no TPM
//! here.

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;

use crate::error::{Error, Result};

/// A named curve the module offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The named-curve OID (prime256v1 1.2.840.10045.3.1.7, secp384r1 1.3.132.0.34).
    fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Curve::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
        }
    }

    /// `CKA_EC_PARAMS`: the DER of the named-curve OID.
    pub(crate) fn params_der(self) -> Vec<u8> {
        self.oid()
            .to_der()
            .expect("an OID of a few bytes always encodes")
    }

    /// The curve of a `CKA_EC_PARAMS` value: a DER named-curve OID spanning the whole
    /// value (no explicit parameters, no curve names as PrintableString).
    pub(crate) fn from_params_der(der: &[u8]) -> Option<Curve> {
        let oid = ObjectIdentifier::from_der(der).ok()?;
        [Curve::P256, Curve::P384]
            .into_iter()
            .find(|c| c.oid() == oid)
    }

    /// Length of a field element (and of r and s) in bytes: 32 / 48.
    pub(crate) fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// Length of the uncompressed point 04‖X‖Y.
    fn point_len(self) -> usize {
        1 + 2 * self.field_len()
    }
}

/// CKA_EC_POINT value: DER OCTET STRING around the uncompressed point 04‖X‖Y.
pub(crate) fn point_to_der(uncompressed: &[u8]) -> Vec<u8> {
    OctetStringRef::new(uncompressed)
        .and_then(|o| o.to_der())
        .expect("a point of at most a few hundred bytes always encodes")
}

/// Accepts the DER OCTET STRING form or a bare uncompressed point; returns 04‖X‖Y (checks
/// length for the curve, and that the point is on the curve, else DataInvalid).
pub(crate) fn point_from_der_or_raw(curve: Curve, data: &[u8]) -> Result<Vec<u8>> {
    // A DER OCTET STRING around a point is always longer than the bare point, so the
    // length alone tells the two forms apart.
    let point = if data.len() == curve.point_len() {
        data
    } else {
        OctetStringRef::from_der(data)
            .map_err(|_| {
                Error::DataInvalid(
                    "EC point is neither an uncompressed point nor a DER OCTET STRING around one",
                )
            })?
            .as_bytes()
    };
    if point.len() != curve.point_len() || point[0] != 0x04 {
        return Err(Error::DataInvalid(
            "EC point is not an uncompressed point of the curve's size",
        ));
    }
    let on_curve = match curve {
        Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
        Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
    };
    if !on_curve {
        return Err(Error::DataInvalid("EC point is not on the curve"));
    }
    Ok(point.to_vec())
}

/// ECDSA verify on the host: `hash` is the already hashed value (CKM_ECDSA gives it; truncate/pad per SEC1 when its length differs from the field), `sig` = r‖s of 2×field_len bytes (else SignatureLenRange); failure → SignatureInvalid.
///
/// `point` may be bare or DER-wrapped (see [`point_from_der_or_raw`]); a bad point →
/// DataInvalid; an empty hash → DataLenRange.
pub(crate) fn verify(curve: Curve, point: &[u8], hash: &[u8], sig: &[u8]) -> Result<()> {
    let field_len = curve.field_len();
    if hash.is_empty() {
        return Err(Error::DataLenRange("ECDSA input is empty"));
    }
    if sig.len() != 2 * field_len {
        return Err(Error::SignatureLenRange);
    }
    let point = point_from_der_or_raw(curve, point)?;
    let e = hash_to_field(field_len, hash);
    let verified = match curve {
        Curve::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| Error::DataInvalid("EC point is not on the curve"))?;
            let sig =
                p256::ecdsa::Signature::from_slice(sig).map_err(|_| Error::SignatureInvalid)?;
            key.verify_prehash(&e, &sig).is_ok()
        }
        Curve::P384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| Error::DataInvalid("EC point is not on the curve"))?;
            let sig =
                p384::ecdsa::Signature::from_slice(sig).map_err(|_| Error::SignatureInvalid)?;
            key.verify_prehash(&e, &sig).is_ok()
        }
    };
    if verified {
        Ok(())
    } else {
        Err(Error::SignatureInvalid)
    }
}

/// r‖s from TPM output: left-pad each of r and s to field_len (leading zero bytes beyond
/// field_len are dropped; a longer value → DataInvalid).
pub(crate) fn signature_rs(curve: Curve, r: &[u8], s: &[u8]) -> Result<Vec<u8>> {
    let field_len = curve.field_len();
    let mut out = vec![0u8; 2 * field_len];
    for (dst, src) in out.chunks_mut(field_len).zip([r, s]) {
        let first = src.iter().position(|&b| b != 0).unwrap_or(src.len());
        let value = &src[first..];
        if value.len() > field_len {
            return Err(Error::DataInvalid(
                "ECDSA signature value longer than the curve's field",
            ));
        }
        dst[field_len - value.len()..].copy_from_slice(value);
    }
    Ok(out)
}

/// SEC1 4.1.4 step 5 for curves whose order has a whole number of bytes: a longer hash is
/// truncated to its leftmost field_len bytes, a shorter one is read as a smaller integer
/// (left-padded with zeros). Done here rather than by the ecdsa crate, which refuses
/// hashes shorter than half the field (SHA-1 with P-384).
fn hash_to_field(field_len: usize, hash: &[u8]) -> Vec<u8> {
    if hash.len() >= field_len {
        hash[..field_len].to_vec()
    } else {
        let mut e = vec![0u8; field_len];
        e[field_len - hash.len()..].copy_from_slice(hash);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::digest::{HashAlg, digest};
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x17; 32]).unwrap()
    }

    fn p384_key() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&[0x29; 48]).unwrap()
    }

    fn p256_point() -> Vec<u8> {
        p256_key()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn p384_point() -> Vec<u8> {
        p384_key()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn params_round_trip_and_unknown_curves_are_refused() {
        for curve in [Curve::P256, Curve::P384] {
            assert_eq!(Curve::from_params_der(&curve.params_der()), Some(curve));
        }
        assert_eq!(
            hex::encode(Curve::P256.params_der()),
            "06082a8648ce3d030107"
        );
        assert_eq!(hex::encode(Curve::P384.params_der()), "06052b81040022");
        // P-521, a PrintableString curve name, and nothing.
        assert_eq!(
            Curve::from_params_der(&hex::decode("06052b81040023").unwrap()),
            None
        );
        assert_eq!(Curve::from_params_der(b"\x13\x0aprime256v1"), None);
        assert_eq!(Curve::from_params_der(&[]), None);
        assert_eq!(Curve::P256.field_len(), 32);
        assert_eq!(Curve::P384.field_len(), 48);
    }

    #[test]
    fn points_round_trip_through_der() {
        for (curve, point, header) in [
            (Curve::P256, p256_point(), "044104"),
            (Curve::P384, p384_point(), "046104"),
        ] {
            let der = point_to_der(&point);
            assert!(hex::encode(&der).starts_with(header));
            assert_eq!(der.len(), point.len() + 2);
            assert_eq!(point_from_der_or_raw(curve, &der).unwrap(), point);
            assert_eq!(point_from_der_or_raw(curve, &point).unwrap(), point);
            // CKA_EC_POINT is DER: a non-minimal (BER long form) length is refused.
            let mut long = vec![0x04, 0x81, der[1]];
            long.extend_from_slice(&point);
            assert!(matches!(
                point_from_der_or_raw(curve, &long),
                Err(Error::DataInvalid(_))
            ));
        }
    }

    #[test]
    fn bad_points_are_refused() {
        let point = p256_point();
        let invalid = |curve, data: &[u8]| {
            matches!(
                point_from_der_or_raw(curve, data),
                Err(Error::DataInvalid(_))
            )
        };
        assert!(invalid(Curve::P384, &point));
        assert!(invalid(Curve::P384, &point_to_der(&point)));
        assert!(invalid(Curve::P256, &point[..64]));
        assert!(invalid(Curve::P256, &[]));
        let mut compressed = point_to_der(&point[..33]);
        compressed[2] = 0x02;
        assert!(invalid(Curve::P256, &compressed));
        let mut off_curve = point.clone();
        off_curve[64] ^= 1;
        assert!(invalid(Curve::P256, &off_curve));
        let mut der = point_to_der(&point);
        der.push(0);
        assert!(invalid(Curve::P256, &der));
        let mut wrong_tag = point_to_der(&point);
        wrong_tag[0] = 0x03;
        assert!(invalid(Curve::P256, &wrong_tag));
    }

    #[test]
    fn der_lengths_use_the_long_form_from_128() {
        assert_eq!(point_to_der(&[0xaa; 3]), [0x04, 0x03, 0xaa, 0xaa, 0xaa]);
        assert_eq!(&point_to_der(&[0; 133])[..3], [0x04, 0x81, 133]);
        assert_eq!(&point_to_der(&[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(point_to_der(&[]), [0x04, 0x00]);
        let der = point_to_der(&[9; 300]);
        assert_eq!(
            OctetStringRef::from_der(&der).unwrap().as_bytes(),
            [9u8; 300]
        );
    }

    #[test]
    fn p256_signatures_verify_and_tampering_is_caught() {
        let key = p256_key();
        let der = point_to_der(&p256_point());
        let hash = digest(HashAlg::Sha256, b"message");
        let sig: p256::ecdsa::Signature = key.sign_prehash(&hash).unwrap();
        let sig = sig.to_bytes().to_vec();
        assert_eq!(sig.len(), 64);
        verify(Curve::P256, &der, &hash, &sig).unwrap();
        verify(Curve::P256, &p256_point(), &hash, &sig).unwrap();

        let mut tampered = sig.clone();
        tampered[10] ^= 1;
        assert!(matches!(
            verify(Curve::P256, &der, &hash, &tampered),
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            verify(Curve::P256, &der, &digest(HashAlg::Sha256, b"other"), &sig),
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            verify(Curve::P256, &der, &hash, &sig[..63]),
            Err(Error::SignatureLenRange)
        ));
        assert!(matches!(
            verify(Curve::P256, &der, &hash, &[0; 64]),
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            verify(Curve::P256, &der, &[], &sig),
            Err(Error::DataLenRange(_))
        ));
    }

    #[test]
    fn hashes_longer_or_shorter_than_the_field_follow_sec1() {
        // SHA-512 on P-256: the leftmost 32 bytes count.
        let h512 = digest(HashAlg::Sha512, b"long");
        let sig: p256::ecdsa::Signature = p256_key().sign_prehash(&h512[..32]).unwrap();
        verify(Curve::P256, &p256_point(), &h512, &sig.to_bytes()).unwrap();

        // SHA-1 on P-384: the 20 bytes are a smaller integer.
        let h1 = digest(HashAlg::Sha1, b"short");
        let mut padded = vec![0u8; 28];
        padded.extend_from_slice(&h1);
        let sig: p384::ecdsa::Signature = p384_key().sign_prehash(&padded).unwrap();
        let sig = sig.to_bytes().to_vec();
        assert_eq!(sig.len(), 96);
        verify(Curve::P384, &point_to_der(&p384_point()), &h1, &sig).unwrap();
        verify(Curve::P384, &p384_point(), &padded, &sig).unwrap();
        assert!(matches!(
            verify(Curve::P256, &p256_point(), &h1, &sig[..64]),
            Err(Error::SignatureInvalid)
        ));
    }

    #[test]
    fn tpm_r_and_s_are_left_padded() {
        let r = [0x01, 0x02];
        let mut s = vec![0x00];
        s.extend_from_slice(&[0xee; 32]);
        let rs = signature_rs(Curve::P256, &r, &s).unwrap();
        assert_eq!(rs.len(), 64);
        assert_eq!(&rs[..30], &[0; 30]);
        assert_eq!(&rs[30..32], &r);
        assert_eq!(&rs[32..], &[0xee; 32]);
        assert_eq!(signature_rs(Curve::P384, &[], &[1]).unwrap().len(), 96);
        assert!(matches!(
            signature_rs(Curve::P256, &[1; 33], &[1]),
            Err(Error::DataInvalid(_))
        ));

        // A real signature split and rejoined still verifies.
        let hash = digest(HashAlg::Sha256, b"m");
        let sig: p256::ecdsa::Signature = p256_key().sign_prehash(&hash).unwrap();
        let (r, s) = sig.split_bytes();
        let rs = signature_rs(Curve::P256, &r, &s).unwrap();
        verify(Curve::P256, &p256_point(), &hash, &rs).unwrap();
    }
}
