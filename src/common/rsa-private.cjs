'use strict';
/**
 * One RSA-2048 private-key operation of the hybrid scheme (spec §6.2): the unwrap of an AES key.
 * Plain CommonJS so that the same file runs on the event loop (hybrid.crypto.ts requires it) and
 * in the gateway's worker threads (piscina loads it as is, under `npm start` and under Jest).
 *
 * Node 20/22 refuse PKCS#1 v1.5 private decryption (CVE-2023-46809) unless their OpenSSL does
 * implicit rejection (Node 24 does); where refused, node-forge does that one step, ~30–40 ms of
 * CPU per unwrap, which is why the gateway runs it in a worker thread.
 */
const { constants, privateDecrypt } = require('node:crypto');

let nativePkcs1 = true;
let forge = null;

/** node-forge copies of private keys, by the caller's key id; a key rotates hourly, so few. */
const forgeKeys = new Map();
const FORGE_KEYS_KEPT = 8;

function forgeKeyOf(key, keyId) {
  let forgeKey = forgeKeys.get(keyId);
  if (forgeKey === undefined) {
    forge ??= require('node-forge');
    forgeKey = forge.pki.privateKeyFromPem(key.export({ type: 'pkcs8', format: 'pem' }).toString());
    if (forgeKeys.size >= FORGE_KEYS_KEPT) {
      forgeKeys.delete(forgeKeys.keys().next().value);
    }
    forgeKeys.set(keyId, forgeKey);
  }
  return forgeKey;
}

function pkcs1(key, keyId, wrapped) {
  if (nativePkcs1) {
    try {
      return privateDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, wrapped);
    } catch (error) {
      if (error.code !== 'ERR_INVALID_ARG_VALUE') {
        throw error;
      }
      nativePkcs1 = false;
    }
  }
  const text = forgeKeyOf(key, keyId).decrypt(wrapped.toString('binary'), 'RSAES-PKCS1-V1_5');
  return Buffer.from(text, 'binary');
}

/**
 * The RSA plaintext of `wrapped` under `key` with `padding` ('oaep': OAEP-SHA256, 'pkcs1':
 * PKCS#1 v1.5), or null when it does not unwrap. `keyId` names the key across threads (a worker
 * receives a fresh KeyObject per task).
 */
function rsaUnwrap(key, keyId, wrapped, padding) {
  try {
    return padding === 'oaep'
      ? privateDecrypt(
          { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
          wrapped,
        )
      : pkcs1(key, keyId, wrapped);
  } catch {
    return null;
  }
}

/** A worker thread's task (piscina): `wrapped` arrives as a Uint8Array. */
function unwrapTask({ key, keyId, wrapped, padding }) {
  return rsaUnwrap(
    key,
    keyId,
    Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.length),
    padding,
  );
}

module.exports = { rsaUnwrap, unwrapTask };
