import type { KeyObject } from 'node:crypto';

export type RsaPadding = 'oaep' | 'pkcs1';

export function rsaUnwrap(
  key: KeyObject,
  keyId: string,
  wrapped: Buffer,
  padding: RsaPadding,
): Buffer | null;

export function unwrapTask(task: {
  key: KeyObject;
  keyId: string;
  wrapped: Uint8Array;
  padding: RsaPadding;
}): Buffer | null;
