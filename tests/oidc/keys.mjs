// Signing keys of the test provider, kept in a JSON file {"keys": [private JWK, ...]}.
//
//   node keys.mjs new FILE       one fresh RS256 key
//   node keys.mjs rotate FILE    a fresh RS256 key first (it signs from the next start), the
//                                old ones kept (still published, so their tokens still verify)
//   node keys.mjs retire FILE    keep only the first key (the old ones leave the JWKS)
//
// Prints the kid of the signing (first) key.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [command, file] = process.argv.slice(2);
if (!file) throw new Error('usage: node keys.mjs new|rotate|retire FILE');

function fresh() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const read = () => JSON.parse(readFileSync(file, 'utf8')).keys;
let keys;
switch (command) {
  case 'new': keys = [fresh()]; break;
  case 'rotate': keys = [fresh(), ...read()]; break;
  case 'retire': keys = read().slice(0, 1); break;
  default: throw new Error(`unknown command ${command}`);
}
writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
process.stdout.write(`${keys[0].kid}\n`);
