// Every prebuild the package ships (scripts/prebuild.mjs, docs/prebuilds.md): what it is,
// what it needs from the machine that loads it, and that it runs where it claims to.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// The C library's own objects; everything else (protobuf, zlib, libstdc++, libgcc) is inside.
// OpenSSL's public function names (libssl's and libcrypto's prefixes).
const OPENSSL_SYMBOL = /^(SSL_|SSL_CTX_|TLS_|DTLS_|X509_|X509V3_|ERR_|BIO_|OPENSSL_|OpenSSL_|PEM_|EVP_|CRYPTO_|CONF_|ASN1_|OBJ_|BN_|DH_|EC_|RSA_|d2i_|i2d_|sk_)/;

const ALLOWED_NEEDED = new Set([
  'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1',
  'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1',
]);
const MAX_GLIBC = [2, 28];
const MAX_BYTES = 3 * 1024 * 1024;
const prebuilds = [
  { dir: 'linux-x64', machine: 'Advanced Micro Devices X86-64' },
  { dir: 'linux-arm64', machine: 'AArch64' },
];

const readelf = (args: string[], file: string): string =>
  execFileSync('readelf', ['-W', ...args, file], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });

function versionParts(v: string): number[] {
  return v.split('.').map(Number);
}
function newer(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return false;
}

describe('prebuilds', function () {
  this.timeout(120_000);
  for (const { dir, machine } of prebuilds) {
    const file = join(root, 'prebuilds', dir, 'raftstore.glibc.node');
    describe(dir, () => {
      it('exists (npm test makes it with scripts/prebuild.mjs)', () => {
        assert.ok(existsSync(file), `${file} is missing`);
      });

      it(`is an ELF shared object for ${machine}`, () => {
        const header = readelf(['-h'], file);
        assert.match(header, /Type:\s+DYN/);
        assert.equal(/Machine:\s+(.*)/.exec(header)?.[1]?.trim(), machine);
      });

      it('needs nothing but the C library', () => {
        const needed = [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1] ?? '');
        assert.ok(needed.length > 0, 'no NEEDED entries at all: not a dynamic object?');
        assert.deepEqual(needed.filter((n) => !ALLOWED_NEEDED.has(n)), [], `NEEDED: ${needed.join(', ')}`);
      });

      it(`needs GLIBC_${MAX_GLIBC.join('.')} at most`, () => {
        const versions = [...readelf(['-V'], file).matchAll(/Name: GLIBC_([0-9.]+)/g)].map((m) => m[1] ?? '');
        assert.ok(versions.length > 0, 'no GLIBC version references found');
        const highest = versions.map(versionParts).reduce((a, b) => (newer(a, b) ? a : b));
        assert.ok(!newer(highest, MAX_GLIBC), `needs GLIBC_${highest.join('.')}`);
      });

      it('binds every C library symbol to a version, and exports only the module entry points', () => {
        const syms = readelf(['--dyn-syms'], file).split('\n')
          .map((l) => l.trim().split(/\s+/))
          .filter((f) => f.length >= 8 && /^\d+:$/.test(f[0] ?? ''));
        // An unversioned strong reference would be looked up in whatever the loading process
        // has: a newer-glibc-only symbol (the kind a static libstdc++ brings) fails to load.
        // Node-API's and OpenSSL's are the exceptions: Node itself provides both (TLS uses the
        // OpenSSL 3 that Node carries; native/rpc/tls.h).
        const loose = syms.filter((f) => f[6] === 'UND' && f[4] !== 'WEAK' && f[7] !== undefined && !f[7].includes('@')
          && !/^(napi_|node_api_)/.test(f[7]) && !OPENSSL_SYMBOL.test(f[7])).map((f) => f[7]);
        assert.deepEqual(loose, []);
        const exported = syms.filter((f) => f[6] !== 'UND' && f[4] === 'GLOBAL').map((f) => f[7]).sort();
        assert.deepEqual(exported, ['napi_register_module_v1', 'node_api_module_get_api_version_v1']);
      });


      it('has no symbol table and stays small', () => {
        assert.doesNotMatch(readelf(['-S'], file), /\.symtab/);
        const size = statSync(file).size;
        assert.ok(size < MAX_BYTES, `${size} bytes`);
      });
    });
  }

  it('linux-arm64 elects and replicates under qemu-user with Debian\'s arm64 Node, over mutual TLS', () => {
    const armRoot = join(root, 'build/qemu/arm64-root');
    assert.ok(existsSync(join(armRoot, 'usr/bin/node')), 'run scripts/prebuild/arm64-node.sh (npm test does)');
    const data = mkdtempSync(join(tmpdir(), 'raftstore-arm64-'));
    try {
      // TLS too: the prebuild is compiled against the build machine's OpenSSL headers and uses
      // the OpenSSL of the Node that loads it (here Debian's arm64 Node and its libssl3).
      execFileSync('bash', [join(root, 'test/fixtures/make-certs.sh'), join(data, 'certs')]);
      const out = execFileSync('qemu-aarch64', ['-L', armRoot, join(armRoot, 'usr/bin/node'),
        join(root, 'test/fixtures/smoke-cluster.mjs'), root, String(PORT), data, '200'],
      // Only prebuilds: build/Release holds this machine's own (x64) build.
      { encoding: 'utf8', env: { ...process.env, PREBUILDS_ONLY: '1', SMOKE_TLS_DIR: join(data, 'certs') }, timeout: 110_000 });
      assert.match(out, /^smoke: linux-arm64 Node v\d+\.\d+\.\d+: leader 127\.0\.0\.1:\d+:0:0, 200 entries applied on 3 replicas over TLS$/m);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});

const PORT = 23000 + Math.floor(Math.random() * 1000);

describe('loading the addon', () => {
  it('fails with ERR_RAFT_ADDON_LOAD, the platform and the ways out when nothing loads', async () => {
    const { loadBinding } = await import('../lib/native.js');
    const { RaftError } = await import('../lib/errors.js');
    const empty = mkdtempSync(join(tmpdir(), 'raftstore-noaddon-'));
    try {
      assert.throws(() => loadBinding(empty), (e: unknown) => {
        assert.ok(e instanceof RaftError);
        assert.equal(e.code, 'ERR_RAFT_ADDON_LOAD');
        assert.match(e.message, new RegExp(`on ${process.platform}-${process.arch} \\(glibc [0-9.]+\\)`));
        assert.match(e.message, /Prebuilds in this package: none/);
        assert.match(e.message, /npm install cmake-js node-addon-api/);
        return true;
      });
      // A prebuild for this platform that the loader refuses (here: not an ELF file at all)
      // says why, in the loader's own words.
      const dir = join(empty, 'prebuilds', `${process.platform}-${process.arch}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'raftstore.glibc.node'), 'not a shared object');
      assert.throws(() => loadBinding(empty), (e: unknown) => {
        assert.ok(e instanceof RaftError && e.code === 'ERR_RAFT_ADDON_LOAD');
        assert.match(e.message, new RegExp(`Prebuilds in this package: ${process.platform}-${process.arch}`));
        assert.match(e.message, /invalid ELF header|file too short/);
        return true;
      });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
