//! Receipt signatures: ECDSA P-256 with SHA-256 (WebCrypto's `ECDSA`/`P-256`, JOSE's ES256)
//! over `H("edgeproof receipt signature", final)`, which commits to the whole sealed core. The
//! receipt carries the public key, so anyone can check the signature; who the key belongs to
//! is the fingerprint's business.

use super::{Encode, Hash, Hasher, Receipt};
use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The only algorithm: ECDSA over P-256 with SHA-256.
pub const ALG: &str = "ES256";

/// A signature over a receipt's sealed core, with the key that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The public key, SEC1 uncompressed (`0x04 ‖ x ‖ y`, WebCrypto's `raw` export).
    pub key: [u8; 65],
    /// As written in the receipt; verification checks it is the key's.
    pub fingerprint: String,
    /// `r ‖ s`, 32 bytes each (WebCrypto's form).
    pub value: [u8; 64],
}

/// A key's short name: the first 8 bytes of SHA-256 of its SEC1 uncompressed form, in hex.
pub fn fingerprint(key: &[u8]) -> String {
    hex::encode(&super::sha256(key)[..8])
}

/// The bytes a signature signs (ECDSA then hashes them with SHA-256).
pub fn signing_message(final_hash: &Hash) -> Hash {
    Hasher::new("edgeproof receipt signature").hash(final_hash).finish()
}

/// 32 random bytes (a salt, a key): the OS natively, `crypto.getRandomValues` in wasm.
pub fn random_salt() -> Result<Hash> {
    let mut b = [0u8; 32];
    #[cfg(not(target_arch = "wasm32"))]
    getrandom::fill(&mut b).map_err(|e| Error::Io(format!("random bytes: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
            .ok()
            .and_then(|c| c.dyn_into::<js_sys::Object>().ok())
            .ok_or_else(|| Error::Io("no crypto.getRandomValues here".into()))?;
        let get = js_sys::Reflect::get(&crypto, &"getRandomValues".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .ok_or_else(|| Error::Io("no crypto.getRandomValues here".into()))?;
        let arr = js_sys::Uint8Array::new_with_length(32);
        get.call1(&crypto, &arr).map_err(|e| Error::Io(format!("crypto.getRandomValues: {e:?}")))?;
        arr.copy_to(&mut b);
    }
    Ok(b)
}

/// A signing key (the CLI's key file: a JWK with `d`, as WebCrypto exports one).
pub struct KeyPair(SigningKey);

#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair> {
        // A random scalar is out of range with probability about 2^-32: draw again.
        for _ in 0..8 {
            if let Ok(k) = KeyPair::from_secret(&random_salt()?) {
                return Ok(k);
            }
        }
        Err(Error::Io("could not draw a P-256 key".into()))
    }

    /// The key with this 32-byte secret scalar (big-endian, as JWK's `d`).
    pub fn from_secret(d: &[u8]) -> Result<KeyPair> {
        SigningKey::from_slice(d).map(KeyPair).map_err(|_| Error::InvalidArgument("not a P-256 private key".into()))
    }

    /// SEC1 uncompressed public key.
    pub fn public_key(&self) -> [u8; 65] {
        let mut k = [0u8; 65];
        k.copy_from_slice(self.0.verifying_key().to_sec1_point(false).as_bytes());
        k
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key())
    }

    /// The private JWK (`kty`, `crv`, `x`, `y`, `d`).
    pub fn to_jwk(&self) -> String {
        let k = self.public_key();
        let jwk = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: B64.encode(&k[1..33]),
            y: B64.encode(&k[33..]),
            d: Some(B64.encode(self.0.to_bytes())),
        };
        serde_json::to_string_pretty(&jwk).unwrap_or_default()
    }

    /// A private JWK; `x` and `y` must be `d`'s public key.
    pub fn from_jwk(s: &str) -> Result<KeyPair> {
        let bad = |m: &str| Error::InvalidArgument(format!("key file: {m}"));
        let jwk: Jwk = serde_json::from_str(s).map_err(|e| bad(&e.to_string()))?;
        if jwk.kty != "EC" || jwk.crv != "P-256" {
            return Err(bad("not an EC P-256 key (kty \"EC\", crv \"P-256\")"));
        }
        let d = jwk.d.ok_or_else(|| bad("no private part (\"d\")"))?;
        let d = B64.decode(d).map_err(|e| bad(&format!("d: {e}")))?;
        let key = KeyPair::from_secret(&d).map_err(|_| bad("d is not a P-256 private key"))?;
        let k = key.public_key();
        if B64.encode(&k[1..33]) != jwk.x || B64.encode(&k[33..]) != jwk.y {
            return Err(bad("x and y are not d's public key"));
        }
        Ok(key)
    }
}

impl Receipt {
    /// Sign the sealed core (seal first: a later edit breaks the signature).
    pub fn sign(&mut self, key: &KeyPair) {
        let sig: p256::ecdsa::Signature = key.0.sign(&signing_message(&self.final_hash));
        let key = key.public_key();
        self.signature = Some(Signature { key, fingerprint: fingerprint(&key), value: sig.to_bytes().into() });
    }

    /// `None`: unsigned; `Some(Ok(fingerprint))`: a good signature over `final`;
    /// `Some(Err(what))`: what is wrong with it.
    pub fn check_signature(&self) -> Option<std::result::Result<String, &'static str>> {
        let s = self.signature.as_ref()?;
        Some((|| {
            let vk = VerifyingKey::from_sec1_bytes(&s.key).map_err(|_| "key")?;
            if s.fingerprint != fingerprint(&s.key) {
                return Err("fingerprint");
            }
            let sig = p256::ecdsa::Signature::from_slice(&s.value).map_err(|_| "value")?;
            vk.verify(&signing_message(&self.final_hash), &sig).map_err(|_| "value")?;
            Ok(s.fingerprint.clone())
        })())
    }
}

/// The JSON form: `{ "alg": "ES256", "key", "fingerprint", "value" }`, key and value in
/// unpadded base64url.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignatureJson {
    alg: String,
    key: String,
    fingerprint: String,
    value: String,
}

impl From<&Signature> for SignatureJson {
    fn from(s: &Signature) -> SignatureJson {
        SignatureJson {
            alg: ALG.into(),
            key: B64.encode(s.key),
            fingerprint: s.fingerprint.clone(),
            value: B64.encode(s.value),
        }
    }
}

impl TryFrom<SignatureJson> for Signature {
    type Error = Error;
    fn try_from(j: SignatureJson) -> Result<Signature> {
        let bad = |m: String| Error::BadReceipt(format!("signature: {m}"));
        if j.alg != ALG {
            return Err(bad(format!("algorithm {:?} (only {ALG:?})", j.alg)));
        }
        let key = B64.decode(&j.key).map_err(|e| bad(format!("key: {e}")))?;
        let value = B64.decode(&j.value).map_err(|e| bad(format!("value: {e}")))?;
        Ok(Signature {
            key: key.try_into().map_err(|k: Vec<u8>| bad(format!("key of {} bytes, not 65", k.len())))?,
            fingerprint: j.fingerprint,
            value: value.try_into().map_err(|v: Vec<u8>| bad(format!("value of {} bytes, not 64", v.len())))?,
        })
    }
}
